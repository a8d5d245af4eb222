"""VDSR (Kim et al., CVPR 2016): a deep plain network learning the residual over bicubic."""
from __future__ import annotations

import torch
from torch import nn

from ..limits import count
from .colour import check_colorspace, merge_luma, split_luma
from .registry import MODELS


@MODELS.register("vdsr", tasks=("sisr",),
                 limits={"num_features": count(1), "num_layers": count(2)})
class VDSR(nn.Module):
    supported_scales = None
    pre_upsampled = True

    def __init__(self, scale: int, num_features: int = 64, num_layers: int = 20,
                 colorspace: str = "rgb"):
        super().__init__()
        if num_layers < 2:
            raise ValueError("num_layers must be at least 2")
        channels = check_colorspace(colorspace)
        self.luma = colorspace == "ycbcr"
        layers: list[nn.Module] = [nn.Conv2d(channels, num_features, 3, padding=1),
                                   nn.ReLU(inplace=True)]
        for _ in range(num_layers - 2):
            layers += [nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_features, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.luma:
            y, chroma = split_luma(x)
            return merge_luma(y + self.body(y), chroma)
        return x + self.body(x)
