#!/usr/bin/env bash
# The whole test suite. Installs what it needs into .venv first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers (LPT_PROBE_TEST_WORKERS; 0 = none): one file per worker at a time, so a
# file's fixtures stay in one process; slowest files first and one torch thread per worker
# (tests/conftest.py); the 20 slowest tests are listed at the end.
workers=${LPT_PROBE_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadfile --no-loadscope-reorder --durations=20 "$@"
