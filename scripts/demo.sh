#!/usr/bin/env bash
# A first real result in about two minutes on two CPU cores: per-layer I(h;y) on TREC with the
# embedded MiniLM, a late prompt at PL 1 and at PL 4 (NPG, 100 steps) against the frozen model,
# with the shuffled-label and random-weights controls and each prompt's paired difference.
# Installs what it needs into .venv first (idempotent). Extra arguments go to lpt_probe.mi
# (argparse takes the last value of a repeated flag: `bash scripts/demo.sh --seeds 13,21`).
# The settings are small on purpose (two prompt layers, 100 steps, 500 probe-train rows, no
# MDL); the paper's task at the command's defaults is `python -m lpt_probe.mi --task rte`.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
echo "demo: checking .venv (scripts/setup.sh)"
bash scripts/setup.sh
data_dir=${LPT_PROBE_DATA_DIR:-../shared/data}
out=artifacts/demo/trec-minilm
for arg in "$@"; do  # an --out among the extra arguments wins (argparse takes the last one)
    if [ "${prev:-}" = "--out" ]; then out=$arg; fi
    case $arg in --out=*) out=${arg#--out=} ;; esac
    prev=$arg
done
echo "demo: setup done in ${SECONDS} s; running python -m lpt_probe.mi on TREC (train 2 prompts, extract, probe)"
.venv/bin/python -m lpt_probe.mi --task trec --data-dir "$data_dir" \
    --prompt-layers 1,4 --generator npg --seeds 13 --steps 100 --lr 1e-2 --eval-every 25 --dev-size 100 \
    --max-length 32 --probe-train-max 500 --probe-dev-size 200 --no-mdl \
    --out "$out" "$@"
echo "demo: done in ${SECONDS} s; figure: $out/mi_by_layer.pdf (the README's Quickstart reads the tables)"
