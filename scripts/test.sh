#!/usr/bin/env bash
# The whole test suite (tests/unit, tests/integration, tests/docs); arguments go to pytest:
# `bash scripts/test.sh tests/unit` runs one folder. Installs what it needs into .venv first
# (idempotent). `bash scripts/test.sh --full` runs every command the README and the docs show
# at the sizes shown, not the small settings CI uses (hours on a CPU: the long studies).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
if [ "${1:-}" = "--full" ]; then
    shift
    export LPT_PROBE_TEST_FULL=1
    set -- tests/docs/test_readme.py tests/docs/test_readme_benchmarks.py -k "command_runs" "$@"
fi
# Two workers (LPT_PROBE_TEST_WORKERS; 0 = none): one group per worker at a time (a file, or
# a chain of README commands: tests/conftest.py), slowest first (tests/suite_layout.py), one torch
# thread per worker (tests/conftest.py); the 20 slowest tests are listed at the end.
workers=${LPT_PROBE_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadgroup --no-loadscope-reorder --durations=20 "$@"
