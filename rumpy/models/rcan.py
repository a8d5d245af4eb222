"""RCAN (Zhang et al., ECCV 2018): residual-in-residual groups of channel-attention blocks."""
from __future__ import annotations

import torch
from torch import nn

from .common import DIV2K_MEAN, MeanShift, Upsampler
from ..limits import count, number
from .registry import MODELS


class ChannelAttention(nn.Module):
    def __init__(self, num_features: int, reduction: int):
        super().__init__()
        hidden = max(1, num_features // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_features, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_features, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class RCAB(nn.Module):
    def __init__(self, num_features: int, reduction: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
            ChannelAttention(num_features, reduction),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class ResidualGroup(nn.Module):
    def __init__(self, num_features: int, num_blocks: int, reduction: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(num_features, reduction, res_scale) for _ in range(num_blocks)],
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# reduction > num_features would leave the attention a zero-width bottleneck (clamped to 1 it
# would silently not be the network asked for).
@MODELS.register("rcan", tasks=("sisr",), limits={
    "num_groups": count(0), "num_blocks": count(0), "num_features": count(1),
    "reduction": count(1, high="num_features"), "res_scale": number()})
class RCAN(nn.Module):
    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False

    def __init__(self, scale: int, num_groups: int = 10, num_blocks: int = 20,
                 num_features: int = 64, reduction: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.sub_mean = MeanShift(DIV2K_MEAN, -1)
        self.add_mean = MeanShift(DIV2K_MEAN, +1)
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.body = nn.Sequential(
            *[ResidualGroup(num_features, num_blocks, reduction, res_scale) for _ in range(num_groups)],
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.tail = nn.Sequential(Upsampler(scale, num_features),
                                  nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = x + self.body(x)
        return self.add_mean(self.tail(x))
