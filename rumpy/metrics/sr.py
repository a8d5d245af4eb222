"""PSNR and SSIM by the standard SR protocol (as in MATLAB and BasicSR), batched in torch:
BT.601 luma of 8-bit-rounded images, `scale` border pixels cropped, SSIM with an 11x11 gaussian
window (sigma 1.5) over valid positions. Computed in float64 so results agree with scikit-image."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import METRICS

# ITU-R BT.601 "studio swing" luma, as MATLAB's rgb2ycbcr (inputs in [0, 255]).
_Y_WEIGHTS = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64) / 255.0


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW in [0, 255] -> Bx1xHxW luma in [16, 235]."""
    w = _Y_WEIGHTS.to(img.device, img.dtype).view(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True) + 16.0


def prepare(img: torch.Tensor, channel: str, crop_border: int) -> torch.Tensor:
    img = img.to(torch.float64)
    if channel == "y":
        img = rgb_to_y(img)
    if crop_border:
        img = img[..., crop_border:-crop_border, crop_border:-crop_border]
    return img


def psnr(sr: torch.Tensor, hr: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    mse = (sr - hr).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range ** 2 / mse)  # inf for identical images, as in skimage


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(sr: torch.Tensor, hr: torch.Tensor, data_range: float = 255.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image (averaged over channels), valid-window positions only."""
    c = sr.shape[1]
    g = _gaussian_window(window, sigma, sr.device, sr.dtype)
    kx = g.view(1, 1, 1, window).expand(c, 1, 1, window)
    ky = g.view(1, 1, window, 1).expand(c, 1, window, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable gaussian, one filter per channel
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = blur(sr), blur(hr)
    var_x = blur(sr * sr) - mu_x ** 2
    var_y = blur(hr * hr) - mu_y ** 2
    cov = blur(sr * hr) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


class _SRMetric:
    higher_is_better = True

    def __init__(self, scale: int, channel: str, crop_border: bool, device=None):
        self.channel = channel
        self.border = scale if crop_border else 0

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self.fn(prepare(sr, self.channel, self.border), prepare(hr, self.channel, self.border))


@METRICS.register("psnr")
class PSNR(_SRMetric):
    name = "PSNR"
    fn = staticmethod(psnr)


@METRICS.register("ssim")
class SSIM(_SRMetric):
    name = "SSIM"
    fn = staticmethod(ssim)
