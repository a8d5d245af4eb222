"""SAFMN (Sun et al., ICCV 2023): a lightweight network of spatially-adaptive feature modulation
(multi-scale pooled features gate the input) and a convolutional channel mixer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..limits import count, number
from .registry import MODELS


class ChannelsFirstLayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SAFM(nn.Module):
    """Split channels into levels; level i is pooled by 2^i, filtered depthwise and upsampled."""

    def __init__(self, dim: int, levels: int = 4):
        super().__init__()
        self.levels = levels
        self.chunk = dim // levels
        self.filters = nn.ModuleList(
            nn.Conv2d(self.chunk, self.chunk, 3, padding=1, groups=self.chunk) for _ in range(levels))
        self.aggregate = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        parts = x.chunk(self.levels, dim=1)
        out = []
        for i, (part, conv) in enumerate(zip(parts, self.filters)):
            if i == 0:
                out.append(conv(part))
            else:
                size = (max(1, h // 2 ** i), max(1, w // 2 ** i))
                pooled = conv(F.adaptive_max_pool2d(part, size))
                out.append(F.interpolate(pooled, size=(h, w), mode="nearest"))
        return x * self.act(self.aggregate(torch.cat(out, dim=1)))


class CCM(nn.Module):
    def __init__(self, dim: int, expansion: float):
        super().__init__()
        hidden = int(dim * expansion)
        self.body = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AttBlock(nn.Module):
    def __init__(self, dim: int, expansion: float):
        super().__init__()
        self.norm1 = ChannelsFirstLayerNorm(dim)
        self.safm = SAFM(dim)
        self.norm2 = ChannelsFirstLayerNorm(dim)
        self.ccm = CCM(dim, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.safm(self.norm1(x))
        return x + self.ccm(self.norm2(x))


@MODELS.register("safmn", tasks=("sisr",), limits={
    "dim": count(4, multiple_of=4), "num_blocks": count(0), "ffn_scale": number(above=0)})
class SAFMN(nn.Module):
    supported_scales = None
    pre_upsampled = False

    def __init__(self, scale: int, dim: int = 36, num_blocks: int = 8, ffn_scale: float = 2.0):
        super().__init__()
        if dim % 4:
            raise ValueError("dim must be a multiple of 4 (SAFM splits it into four levels)")
        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.body = nn.Sequential(*[AttBlock(dim, ffn_scale) for _ in range(num_blocks)])
        self.tail = nn.Sequential(nn.Conv2d(dim, 3 * scale * scale, 3, padding=1),
                                  nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.tail(x + self.body(x))
