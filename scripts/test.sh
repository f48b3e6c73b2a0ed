#!/usr/bin/env bash
# The whole test suite. Installs what it needs into .venv first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
