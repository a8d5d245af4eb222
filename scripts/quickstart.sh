#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and trains a bundled quickstart on CPU: super-resolution by default,
# `regression` as the first argument for the blur-width regression, `blind` for the blind SR
# comparison (an SFTMD given each image's blur kernel against the same EDSR without it). Each call
# makes new run folders (Results/<quickstart>_<time>), never clashing with an earlier run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "regression" ]; then
    shift
    exec .venv/bin/rumpy train --parameters args/blur_regression.toml --gpu off \
        --experiment_name "blur_regression_$(date +%Y%m%d_%H%M%S)" "$@"
fi
if [ "${1:-}" = "blind" ]; then
    shift
    # 96x96 HR tiles of the quickstart photos (each tile gets its own kernel), blurred and
    # downscaled by args/degrade_blind_quick.toml; built once under ~/.cache/rumpy.
    root="$HOME/.cache/rumpy/datasets/blind_quick"
    .venv/bin/python - "$root" <<'PY'
import sys
from pathlib import Path
from rumpy.data.builtin import quickstart
from rumpy.data.images import read_rgb, write_png

root = Path(sys.argv[1])
for split, role, per_photo in (("train", "train", 40), ("valid", "eval", 12)):
    out = root / split / "HR"
    if out.is_dir():
        continue
    tmp = root / split / ".HR-building"
    tmp.mkdir(parents=True, exist_ok=True)
    _, hr_dir = quickstart(Path.home() / ".cache" / "rumpy", 2, role)
    for photo in sorted(hr_dir.iterdir()):
        img = read_rgb(photo)
        corners = [(t, l) for t in range(0, img.shape[0] - 95, 96)
                   for l in range(0, img.shape[1] - 95, 96)]
        for k, (t, l) in enumerate(corners[:per_photo]):
            write_png(tmp / f"{photo.stem}_{k:02d}.png", img[t:t + 96, l:l + 96])
    tmp.rename(out)
PY
    for split in train valid; do
        if [ ! -f "$root/$split/LR_blur_x2/degradation_metadata.csv" ]; then
            rm -rf "$root/$split/LR_blur_x2"
            .venv/bin/rumpy degrade --hr "$root/$split/HR" --out "$root/$split/LR_blur_x2" \
                --pipeline_config args/degrade_blind_quick.toml
        fi
    done
    stamp="$(date +%Y%m%d_%H%M%S)"
    .venv/bin/train_sisr --parameters args/blind_quick.toml --gpu off \
        --experiment_name "blind_quick_sftmd_$stamp" "$@"
    exec .venv/bin/train_sisr --parameters args/blind_quick.toml --gpu off \
        --experiment_name "blind_quick_edsr_$stamp" 'model.name="edsr"' \
        'model.internal_params.num_blocks=15' \
        'data.training_sets.train.metadata=[]' 'data.eval_sets.val.metadata=[]' "$@"
fi
exec .venv/bin/train_sisr --parameters args/quickstart.toml --gpu off \
    --experiment_name "quickstart_$(date +%Y%m%d_%H%M%S)" "$@"
