"""Tiled and self-ensembled SR forward passes, on the model's prepared float input.

Tiling without blending: the input is cut into `tile` x `tile` cores; each core is run with up
to `overlap` pixels of real context on every side (less only at the image border, where the
whole-image pass sees the same zero padding), and only the core's part of the output is kept.
Every output pixel thus comes from exactly one tile, computed from the same input pixels as in
the whole-image pass whenever the network's receptive-field radius is at most `overlap`: for
such a fully-convolutional network the result equals whole-image inference up to float
rounding (different tensor sizes may sum in a different order). Networks with a global
operation (RCAN's channel attention pools the whole image) differ by design."""
from __future__ import annotations

from typing import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


def tiled(forward: Forward, x: torch.Tensor, tile: int, overlap: int, scale: int) -> torch.Tensor:
    """forward(x) computed tile by tile; `scale` is the output/input size ratio."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got {tile} and {overlap}")
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return forward(x)
    out = None
    s = scale
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            t1, l1 = min(bottom + overlap, height), min(right + overlap, width)
            y = forward(x[..., t0:t1, l0:l1])
            if y.shape[-2:] != ((t1 - t0) * s, (l1 - l0) * s):
                raise ValueError(f"the model maps a {t1 - t0}x{l1 - l0} tile to "
                                 f"{tuple(y.shape[-2:])}, not x{s}: it cannot be tiled")
            if out is None:
                out = y.new_empty(*y.shape[:-2], height * s, width * s)
            out[..., top * s: bottom * s, left * s: right * s] = \
                y[..., (top - t0) * s: (bottom - t0) * s, (left - l0) * s: (right - l0) * s]
    return out


def _transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 symmetries of the square: bit 2 transposes, bits 0/1 flip W/H."""
    if k & 4:
        x = x.transpose(-2, -1)
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    return x.flip(dims) if dims else x


def _inverse(y: torch.Tensor, k: int) -> torch.Tensor:
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if k & bit]
    if dims:
        y = y.flip(dims)
    return y.transpose(-2, -1) if k & 4 else y


def self_ensemble(forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """The mean of the outputs for the 8 flips/rotations of x, each mapped back (x8 geometric
    self-ensemble, as in EDSR's "+" results)."""
    total = None
    for k in range(8):
        y = _inverse(forward(_transform(x, k)), k)
        total = y if total is None else total + y
    return total / 8
