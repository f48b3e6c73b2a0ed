#!/usr/bin/env bash
# The main job on the embedded offline default: per-layer I(h;y) for RTE with MiniLM.
# Installs what it needs into .venv first (idempotent). Extra arguments go to lpt_probe.mi.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
data_dir=${LPT_PROBE_DATA_DIR:-../shared/data}
exec .venv/bin/python -m lpt_probe.mi --task rte --data-dir "$data_dir" "$@"
