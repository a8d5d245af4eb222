"""Validation metrics: our batched torch PSNR+SSIM vs scikit-image per image on the same images.

Run: .venv/bin/python benchmarks/metrics.py
Prints both times and the speed-up (target >= 2.5x), and the largest disagreement."""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rumpy.data.images import bicubic, downscale_uint8, quantize
from rumpy.metrics import METRICS
from rumpy.metrics.sr import prepare

SCALE = 2
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


def images() -> list[tuple[np.ndarray, np.ndarray]]:
    """(SR, HR) pairs: HR photos and their bicubic x2 reconstructions, uint8."""
    out = []
    for name in PHOTOS:
        hr = getattr(data, name)()
        hr = hr[: hr.shape[0] // SCALE * SCALE, : hr.shape[1] // SCALE * SCALE]
        lr = torch.from_numpy(downscale_uint8(hr, SCALE)).permute(2, 0, 1)[None].double() / 255
        sr = quantize(bicubic(lr, hr.shape[:2]))[0].permute(1, 2, 0).byte().numpy()
        out.append((sr, hr))
    return out


def skimage_metrics(pairs):
    res = []
    for sr, hr in pairs:
        ys = rgb2ycbcr(sr)[..., 0][SCALE:-SCALE, SCALE:-SCALE]
        yh = rgb2ycbcr(hr)[..., 0][SCALE:-SCALE, SCALE:-SCALE]
        res.append((peak_signal_noise_ratio(yh, ys, data_range=255),
                    structural_similarity(yh, ys, data_range=255, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)))
    return res


def torch_metrics(tensors, psnr, ssim):
    res = []
    for sr, hr in tensors:  # full-size eval images differ in size: one per batch, as in training
        sr_y, hr_y = prepare(sr, "y", SCALE), prepare(hr, "y", SCALE)
        res.append((float(psnr(sr_y, hr_y)[0]), float(ssim(sr_y, hr_y)[0])))
    return res


def main(rounds: int = 5) -> None:
    pairs = images()
    tensors = [(torch.from_numpy(s).permute(2, 0, 1)[None].float(),
                torch.from_numpy(h).permute(2, 0, 1)[None].float()) for s, h in pairs]
    psnr = METRICS.get("psnr")()
    ssim = METRICS.get("ssim")()
    ref_t, our_t = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        ref = skimage_metrics(pairs)
        ref_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = torch_metrics(tensors, psnr, ssim)
        our_t.append(time.perf_counter() - t)
    diff = max(max(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in zip(ref, ours))
    pixels = sum(h.shape[0] * h.shape[1] for _, h in pairs) / 1e6
    r, o = statistics.median(ref_t), statistics.median(our_t)
    print(f"{len(pairs)} photos ({pixels:.1f} Mpx), Y channel, border {SCALE}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"scikit-image per image: {r:.3f} s; rumpy torch: {o:.3f} s; speed-up {r / o:.2f}x")
    print(f"largest |difference| in PSNR or SSIM: {diff:.2e}")


if __name__ == "__main__":
    main()
