#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and trains the bundled quickstart on CPU. Each call makes a new run
# folder (Results/quickstart_<time>), so running it again never clashes with an earlier run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/train_sisr --parameters args/quickstart.toml --gpu off \
    --experiment_name "quickstart_$(date +%Y%m%d_%H%M%S)" "$@"
