#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and trains a bundled quickstart on CPU: super-resolution by default,
# `regression` as the first argument for the blur-width regression. Each call makes a new run
# folder (Results/<quickstart>_<time>), so running it again never clashes with an earlier run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "regression" ]; then
    shift
    exec .venv/bin/rumpy train --parameters args/blur_regression.toml --gpu off \
        --experiment_name "blur_regression_$(date +%Y%m%d_%H%M%S)" "$@"
fi
exec .venv/bin/train_sisr --parameters args/quickstart.toml --gpu off \
    --experiment_name "quickstart_$(date +%Y%m%d_%H%M%S)" "$@"
