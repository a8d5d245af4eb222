"""Writes original_danv2.pt: weights, input and outputs of the original RUMpy tool's DANv2 at a
tiny size, which tests/test_dan.py loads into rumpy's `dan` (mode = "v2", by name, strict) and
compares. Nothing of the original is copied here: its DANv2.py (which imports torch alone) is
loaded from the checkout given on the command line.

    python tests/data/original_danv2/make_fixture.py --original /path/to/RUMpy \
        [--out tests/data/original_danv2/original_danv2.pt]"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODULE = "rumpy/SISR/models/blur_kernel_blind_sr/DANv2.py"
# rumpy's internal_params for the same network (the original's DANv2 builds its Estimator at
# 64 features and 5 blocks; the generator swaps in the original's Estimator class at 16 and 1,
# rumpy's estimator_nf and estimator_blocks)
ARCH = {"mode": "v2", "nf": 8, "nb": 2, "ng": 2, "loop": 3, "kernel_size": 5,
        "estimator_nf": 16, "estimator_blocks": 1}
SCALE, PCA = 2, 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--original", required=True, help="a checkout of github.com/um-dsrg/RUMpy")
    ap.add_argument("--out", default=str(HERE / "original_danv2.pt"))
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("orig_danv2", Path(args.original) / MODULE)
    orig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orig)
    torch.manual_seed(0)
    k = ARCH["kernel_size"]
    basis = torch.linalg.qr(torch.randn(k * k, PCA))[0]  # orthonormal columns: a PCA matrix
    pca_path = Path(args.out).with_suffix(".pca.tmp")
    torch.save(basis, pca_path)
    net = orig.DANv2(nf=ARCH["nf"], nb=ARCH["nb"], ng=ARCH["ng"], upscale=SCALE,
                     input_para=PCA, kernel_size=k, loop=ARCH["loop"], pca_matrix_path=str(pca_path))
    pca_path.unlink()
    net.Estimator = orig.Estimator(in_nc=3, nf=ARCH["estimator_nf"], para_len=PCA,
                                   num_blocks=ARCH["estimator_blocks"], scale=SCALE, kernel_size=k)
    with torch.no_grad():  # larger weights than the default init, so every path matters
        for p in net.parameters():
            p.copy_((torch.randn_like(p) * 0.1).half().float())
    net.eval()
    lr = torch.rand(2, 3, 7, 9).half().float()
    with torch.no_grad():
        srs, ker_maps, kernels = net(lr)
    state = {n: (t.half() if t.is_floating_point() and n not in ("encoder", "init_ker_map") else t)
             for n, t in net.state_dict().items()}
    torch.save({"arch": ARCH, "scale": SCALE, "num_metadata": PCA, "state_dict": state,
                "lr": lr.half(), "srs": torch.stack(srs), "kernels": torch.stack(kernels),
                "ker_maps": torch.stack(ker_maps)}, args.out)
    print(f"{args.out}: {Path(args.out).stat().st_size} bytes, "
          f"{sum(p.numel() for p in net.parameters())} parameters")


if __name__ == "__main__":
    main()
