"""PSNR and SSIM by the standard SR protocol (as in MATLAB and BasicSR), batched in torch:
BT.601 luma of 8-bit-rounded images, `scale` border pixels cropped, SSIM with an 11x11 gaussian
window (sigma 1.5) over valid positions. Both agree with scikit-image to 1e-4 (see
tests/test_metrics.py).

On a CPU the metrics run with a thread count chosen for the size of their operations
(`threads_for`): an elementwise op on a few million floats gains little from a second thread,
and on a loaded machine each parallel op waits at its barrier for a thread that is not
scheduled, which made 2 threads 8-15x slower than one. Element for element the results do not
depend on the thread count."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .declared import builtin

# ITU-R BT.601 "studio swing" luma, as MATLAB's rgb2ycbcr (inputs in [0, 255]).
_Y_WEIGHTS = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64) / 255.0


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW in [0, 255] -> Bx1xHxW luma in [16, 235]."""
    w = _Y_WEIGHTS.to(img.device, img.dtype)
    return img[:, 0:1] * w[0] + img[:, 1:2] * w[1] + img[:, 2:3] * w[2] + 16.0


def grey_images(hr: torch.Tensor) -> torch.Tensor:
    """B bools: the images whose three channels are equal everywhere (a greyscale file read
    as RGB, as Set14's bridge.png)."""
    return ((hr[:, 0] == hr[:, 1]) & (hr[:, 1] == hr[:, 2])).flatten(1).all(1)


def prepare_pair(sr: torch.Tensor, hr: torch.Tensor, channel: str, crop_border: int,
                 grey: str = "own") -> tuple[torch.Tensor, torch.Tensor]:
    """`prepare` of an SR and HR batch. On luma, a greyscale image (by its HR) is scored as the
    SR papers' MATLAB scripts score it (`grey = "own"`): on its grey values, the HR's own and
    the SR's full-range luma ((Y - 16) * 255 / 219, the same weights summing to 1, which is the
    grey value of a grey SR); its studio-swing luma (16 + 219/255 g, `grey = "luma"`, BasicSR's
    way) compresses its errors and gains it 20 log10(255/219) = 1.32 dB of PSNR."""
    sr_p, hr_p = prepare(sr, channel, crop_border), prepare(hr, channel, crop_border)
    if channel != "y" or grey != "own":
        return sr_p, hr_p
    mask = grey_images(hr)
    if bool(mask.any()):
        full = (255.0 / 219.0)
        sr_p = torch.where(mask[:, None, None, None], (sr_p - 16.0) * full, sr_p)
        hr_p = torch.where(mask[:, None, None, None], (hr_p - 16.0) * full, hr_p)
    return sr_p, hr_p


# Elements an op must touch per thread before another thread pays for its wake-up and barrier.
PARALLEL_GRAIN = 1 << 23
# SSIM output pixels per band: bands bound the intermediates (~40 B a pixel), and every band
# costs ~40 ops, so a band is as large as keeps those in a few MB of cache.
BAND_PIXELS = 1 << 17


def threads_for(numel: int, device: torch.device | str = "cpu") -> int:
    """Intra-op threads for ops of `numel` elements: 1 up to PARALLEL_GRAIN, at most torch's
    setting."""
    if torch.device(device).type != "cpu":
        return torch.get_num_threads()
    return max(1, min(torch.get_num_threads(), numel // PARALLEL_GRAIN))


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to `n` for a block (restored after it)."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare(img: torch.Tensor, channel: str, crop_border: int) -> torch.Tensor:
    """The SR protocol's view of an 8-bit image batch (floats in [0, 255]): luma or RGB, border
    cropped, float32 (exact for 8-bit values; luma within 2e-5 of float64). Under the metrics'
    thread guard like PSNR and SSIM: outside it, its elementwise ops on a busy machine waited at
    the barriers of threads that were not scheduled (4x slower than scikit-image under load)."""
    if crop_border:
        img = img[..., crop_border:-crop_border, crop_border:-crop_border]
    with num_threads(threads_for(img.numel(), img.device)):
        img = img.float()
        return rgb_to_y(img) if channel == "y" else img


def psnr(sr: torch.Tensor, hr: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    with num_threads(threads_for(sr.numel(), sr.device)):
        mse = (sr - hr).double().pow(2).flatten(1).mean(1)
        return 10.0 * torch.log10(data_range ** 2 / mse)  # inf for identical images, as in skimage


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur_valid(x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable filter over valid positions as a sum of shifted slices: in float64 on a CPU this
    is several times faster than conv2d, which has no fast double-precision path."""
    n = len(taps)
    w = x.shape[-1] - n + 1
    rows = x[..., :w] * taps[0]
    for k in range(1, n):
        rows.add_(x[..., k: k + w], alpha=taps[k])
    h = x.shape[-2] - n + 1
    out = rows[..., :h, :] * taps[0]
    for k in range(1, n):
        out.add_(rows[..., k: k + h, :], alpha=taps[k])
    return out


def _ssim_sum(x: torch.Tensor, y: torch.Tensor, taps: list[float], centre: float,
              data_range: float) -> torch.Tensor:
    """Sum of the SSIM map of x, y (already centred float32) per image, and its size."""
    c = x.shape[1]
    # the five local statistics blurred in one pass over a stacked tensor
    mx, my, xx, yy, xy = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), taps).split(c, 1)
    var_x = xx - mx * mx
    var_y = yy - my * my
    cov = xy - mx * my
    mx += centre
    my += centre
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).double().sum(1)


def ssim(sr: torch.Tensor, hr: torch.Tensor, data_range: float = 255.0, window: int = 11,
         sigma: float = 1.5, band: int | None = None) -> torch.Tensor:
    """Mean SSIM per image (averaged over channels), valid-window positions only.

    The local statistics are computed in float32 (several times faster than float64 on a CPU) from
    values centred on data_range / 2: variances and covariance are shift-invariant, and centring
    keeps E[x^2] - E[x]^2 free of cancellation, so results agree with float64 to ~1e-6. Large
    images are processed in bands of `band` output rows (default: about BAND_PIXELS output
    pixels of the batch, at least 64 rows) so the intermediates stay in cache."""
    if sr.shape[-2] < window or sr.shape[-1] < window:  # no valid position: the mean would be 0/0
        raise ValueError(f"SSIM needs at least {window}x{window} pixels after the border crop, got "
                         f"{sr.shape[-2]}x{sr.shape[-1]}")
    taps = _gaussian_window(window, sigma, "cpu", torch.float64).tolist()
    centre = data_range / 2
    out_h = sr.shape[-2] - window + 1
    out_w = sr.shape[-1] - window + 1
    if band is None:
        band = max(64, BAND_PIXELS // max(1, out_w * sr.shape[0] * sr.shape[1]))
    total = torch.zeros(sr.shape[0], dtype=torch.float64, device=sr.device)
    # the largest op: the five stacked statistics of a band
    work = 5 * sr.shape[0] * sr.shape[1] * (min(band, out_h) + window - 1) * sr.shape[-1]
    with num_threads(threads_for(work, sr.device)):
        for top in range(0, out_h, band):
            rows = slice(top, min(top + band, out_h) + window - 1)
            x = (sr[..., rows, :] - centre).float()
            y = (hr[..., rows, :] - centre).float()
            total += _ssim_sum(x, y, taps, centre, data_range)
    return total / (out_h * out_w * sr.shape[1])


class _ProtocolMetric:
    """Scores images already prepared by the SR protocol (`prepare`)."""

    protocol = True

    def __init__(self, device=None):
        pass


@builtin("psnr")
class PSNR(_ProtocolMetric):

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return psnr(sr, hr)


@builtin("ssim")
class SSIM(_ProtocolMetric):

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return ssim(sr, hr)
