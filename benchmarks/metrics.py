"""Validation metrics: our batched torch PSNR+SSIM vs scikit-image per image on the same images.

Run: .venv/bin/python benchmarks/metrics.py
Prints both times and the speed-up (target >= 2.5x), and the largest disagreement.

    .venv/bin/python benchmarks/metrics.py --contention [--busy N]

measures on a busy machine instead: N processes (default: one per core) spin while PSNR+SSIM
(luma, border 2) of one 256x256 image and of one DIV2K-sized image (2040x1356) are timed, for
scikit-image, rumpy, and rumpy with `prepare` outside the thread guard (as before issue 23).
Ratios > 1 mean rumpy is faster."""
from __future__ import annotations

import argparse
import multiprocessing
import os
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


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _unguarded_prepare(img: torch.Tensor, channel: str, crop_border: int) -> torch.Tensor:
    """metrics.sr.prepare as it was: the crop, float and luma with torch's own thread count."""
    from rumpy.metrics.sr import rgb_to_y

    if crop_border:
        img = img[..., crop_border:-crop_border, crop_border:-crop_border]
    img = img.float()
    return rgb_to_y(img) if channel == "y" else img


def _sized(side_h: int, side_w: int) -> tuple[np.ndarray, np.ndarray]:
    """(SR, HR) of the given size: a photo tiled to size, and its bicubic x2 reconstruction."""
    photo = data.astronaut()
    reps = (-(-side_h // photo.shape[0]), -(-side_w // photo.shape[1]), 1)
    hr = np.tile(photo, reps)[:side_h, :side_w].copy()
    lr = torch.from_numpy(downscale_uint8(hr, SCALE)).permute(2, 0, 1)[None].double() / 255
    sr = quantize(bicubic(lr, hr.shape[:2]))[0].permute(1, 2, 0).byte().numpy()
    return sr, hr


def _best_of(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def contention(busy: int, rounds: int = 7) -> None:
    import rumpy.metrics.sr as sr_module

    psnr, ssim = METRICS.get("psnr")(), METRICS.get("ssim")()
    cases = {"256x256": _sized(256, 256), "DIV2K 2040x1356": _sized(1356, 2040)}
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
                for _ in range(busy)]
    for proc in spinners:
        proc.start()
    try:
        print(f"{busy} busy processes on {os.cpu_count()} cores; torch threads "
              f"{torch.get_num_threads()}; best of {rounds}")
        print(f"{'image':18s}{'scikit-image':>14s}{'rumpy':>10s}{'ratio':>8s}"
              f"{'unguarded prepare':>20s}{'ratio':>8s}")
        for name, pair in cases.items():
            tensors = [(torch.from_numpy(pair[0]).permute(2, 0, 1)[None].float(),
                        torch.from_numpy(pair[1]).permute(2, 0, 1)[None].float())]
            ref = _best_of(lambda: skimage_metrics([pair]), rounds)
            ours = _best_of(lambda: torch_metrics(tensors, psnr, ssim), rounds)
            guarded = sr_module.prepare
            globals()["prepare"] = _unguarded_prepare
            try:
                before = _best_of(lambda: torch_metrics(tensors, psnr, ssim), rounds)
            finally:
                globals()["prepare"] = guarded
            print(f"{name:18s}{ref:13.4f}s{ours:9.4f}s{ref / ours:7.2f}x"
                  f"{before:19.4f}s{ref / before:7.2f}x")
    finally:
        stop.set()
        for proc in spinners:
            proc.join(timeout=5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contention", action="store_true", help="time on a busy machine")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2,
                        help="busy processes with --contention (default: one per core)")
    args = parser.parse_args()
    if args.contention:
        contention(args.busy)
    else:
        main()
