"""Blur kernels as Real-ESRGAN (Wang et al. 2021) and SRMD (Zhang et al. 2018) define them: the
Gaussian family on a k x k grid centred on the middle pixel, shaped by a covariance
U diag(sigma_x^2, sigma_y^2) U^T rotated by `rotation`; the generalized Gaussian
exp(-(x^T S^-1 x / 2)^beta), the plateau 1 / (1 + (x^T S^-1 x)^beta), and the circular low-pass
(sinc) filter of cutoff omega_c. Every kernel sums to 1."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso", "sinc")
# the original tool's numeric kernel codes (use_kernel_code = true)
KERNEL_CODES = {name: i for i, name in enumerate(KERNEL_TYPES)}


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    """x^T S^-1 x at every grid position."""
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], axis=-1)
    c, s = math.cos(rotation), math.sin(rotation)
    u = np.array([[c, -s], [s, c]])
    cov = u @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ u.T
    return np.sum((grid @ np.linalg.inv(cov)) * grid, axis=-1)


def gaussian(size: int, sigma_x: float, sigma_y: float, rotation: float) -> np.ndarray:
    k = np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, rotation))
    return k / k.sum()


def generalized(size: int, sigma_x: float, sigma_y: float, rotation: float,
                beta: float) -> np.ndarray:
    k = np.exp(-0.5 * np.power(_quadratic_form(size, sigma_x, sigma_y, rotation), beta))
    return k / k.sum()


def plateau(size: int, sigma_x: float, sigma_y: float, rotation: float, beta: float) -> np.ndarray:
    k = np.reciprocal(np.power(_quadratic_form(size, sigma_x, sigma_y, rotation), beta) + 1)
    return k / k.sum()


def sinc(size: int, omega_c: float) -> np.ndarray:
    from scipy import special

    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size]
    r = np.sqrt((x - c) ** 2 + (y - c) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega_c * special.j1(omega_c * r) / (2 * np.pi * r)
    k[(size - 1) // 2, (size - 1) // 2] = omega_c ** 2 / (4 * np.pi)  # the limit at r = 0
    return k / k.sum()


def make_kernel(kind: str, size: int, p: dict) -> np.ndarray:
    if kind == "sinc":
        return sinc(size, p["omega_c"])
    if kind.startswith("generalized"):
        return generalized(size, p["sigma_x"], p["sigma_y"], p["rotation"], p["beta_g"])
    if kind.startswith("plateau"):
        return plateau(size, p["sigma_x"], p["sigma_y"], p["rotation"], p["beta_p"])
    return gaussian(size, p["sigma_x"], p["sigma_y"], p["rotation"])


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxWx3 float levels: the kernel correlated with each channel, borders reflected
    (Real-ESRGAN's filter2D)."""
    k = kernel.shape[0]
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64)).permute(2, 0, 1)[None]
    if min(x.shape[-2:]) <= k // 2:  # reflect padding needs a side longer than the pad
        raise ValueError(f"a {img.shape[1]}x{img.shape[0]} image is too small for a {k}x{k} "
                         f"blur kernel")
    x = F.pad(x, (k // 2,) * 4, mode="reflect")
    w = torch.from_numpy(kernel).to(torch.float64)[None, None].repeat(3, 1, 1, 1)
    return F.conv2d(x, w, groups=3)[0].permute(1, 2, 0).numpy()
