#!/usr/bin/env bash
# The whole test suite (tests/unit, tests/integration, tests/docs); arguments go to pytest:
# `bash scripts/test.sh tests/unit` runs one folder. Installs what it needs into .venv first
# (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# Two workers (LPT_PROBE_TEST_WORKERS; 0 = none): one group per worker at a time (a file, or
# a chain of README commands: tests/conftest.py), slowest first (tests/suite_layout.py), one torch
# thread per worker (tests/conftest.py); the 20 slowest tests are listed at the end.
workers=${LPT_PROBE_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadgroup --no-loadscope-reorder --durations=20 "$@"
