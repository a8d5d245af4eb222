"""EDSR (Lim et al., CVPRW 2017): residual blocks without batch norm, sub-pixel upsampling."""
from __future__ import annotations

import torch
from torch import nn

from .common import DIV2K_MEAN, MeanShift, Upsampler
from ..limits import count, number
from .registry import MODELS


class ResBlock(nn.Module):
    def __init__(self, num_features: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


@MODELS.register("edsr", tasks=("sisr",), limits={
    "num_features": count(1), "num_blocks": count(0), "res_scale": number()})
class EDSR(nn.Module):
    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False

    def __init__(self, scale: int, num_features: int = 64, num_blocks: int = 16,
                 res_scale: float = 0.1):
        super().__init__()
        self.sub_mean = MeanShift(DIV2K_MEAN, -1)
        self.add_mean = MeanShift(DIV2K_MEAN, +1)
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(num_features, res_scale) for _ in range(num_blocks)],
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.tail = nn.Sequential(Upsampler(scale, num_features),
                                  nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = x + self.body(x)
        return self.add_mean(self.tail(x))
