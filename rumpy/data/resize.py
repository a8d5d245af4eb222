"""Bicubic resampling exactly as MATLAB's `imresize` (the resampler every published SR table uses
for LR images and for its bicubic row): Keys cubic with a = -0.5, the kernel stretched by 1/scale
when shrinking (antialiasing), each output's weights normalised to sum 1, and out-of-range taps
mirrored back into the image (the edge pixel repeated, not renormalised away as in PyTorch).

Written with torch operations only, from the sizes at run time, so it scripts and traces with
dynamic image sizes (the exported pre-upsampled models carry it inside)."""
from __future__ import annotations

import math
from typing import List, Tuple

import torch


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1).to(x.dtype)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)).to(x.dtype)
    return near + far


def contributions(in_len: int, out_len: int, device: torch.device
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(indices, weights), each out_len x taps: output i is sum_k weights[i, k] * input[indices[i, k]]
    (0-based indices, already mirrored into [0, in_len))."""
    scale = out_len / in_len
    width = 4.0 / scale if scale < 1 else 4.0
    # MATLAB's 1-based coordinates: output pixel x sits at u in input coordinates
    x = torch.arange(1, out_len + 1, dtype=torch.float64, device=device)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left.unsqueeze(1) + torch.arange(taps, dtype=torch.float64, device=device).unsqueeze(0)
    dist = u.unsqueeze(1) - idx
    if scale < 1:
        w = scale * _cubic(scale * dist)
    else:
        w = _cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    keep = (w != 0).any(dim=0)  # taps outside every output's support cost a pass for nothing
    idx, w = idx[:, keep], w[:, keep]
    period = 2 * in_len
    r = torch.remainder(idx.long() - 1, period)
    r = torch.where(r < in_len, r, period - 1 - r)
    return r, w


def _along(img: torch.Tensor, dim: int, out_len: int) -> torch.Tensor:
    idx, w = contributions(img.shape[dim], out_len, img.device)
    w = w.to(img.dtype)
    shape: List[int] = [1] * img.dim()
    shape[dim] = out_len
    out = torch.zeros(0, dtype=img.dtype, device=img.device)
    for k in range(idx.shape[1]):
        term = img.index_select(dim, idx[:, k]) * w[:, k].reshape(shape)
        out = term if k == 0 else out + term
    return out


def imresize(img: torch.Tensor, size: List[int]) -> torch.Tensor:
    """MATLAB `imresize(img, size, 'bicubic')` of a float ...xHxW tensor (any value range; not
    rounded or clamped). Rows first, then columns, as MATLAB orders equal scales."""
    out = img
    if size[0] != img.shape[-2]:
        out = _along(out, out.dim() - 2, size[0])
    if size[1] != img.shape[-1]:
        out = _along(out, out.dim() - 1, size[1])
    return out


def _to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 255).add(0.5).floor()  # MATLAB's conversion: saturate, round half up


def imresize_uint8(levels: torch.Tensor, size: List[int]) -> torch.Tensor:
    """MATLAB `imresize` of a uint8 image given as float 8-bit levels: each pass returns uint8 in
    MATLAB (its mex keeps the input's class), so the result is rounded after rows and again after
    columns; float levels out."""
    out = levels
    if size[0] != levels.shape[-2]:
        out = _to_uint8_levels(_along(out, out.dim() - 2, size[0]))
    if size[1] != levels.shape[-1]:
        out = _to_uint8_levels(_along(out, out.dim() - 1, size[1]))
    return out
