"""SRCNN (Dong et al., ECCV 2014): three convolutions on bicubic-upsampled input."""
from __future__ import annotations

import torch
from torch import nn

from ..limits import count
from .colour import check_colorspace, merge_luma, split_luma
from .registry import MODELS


# Even kernels would shift the output by half a pixel against the same-size padding.
@MODELS.register("srcnn", tasks=("sisr",), limits={
    "num_features": count(1), "mid_features": count(1), "kernel_sizes": count(1, items=3, odd=True)})
class SRCNN(nn.Module):
    supported_scales = None
    pre_upsampled = True

    def __init__(self, scale: int, num_features: int = 64, mid_features: int = 32,
                 kernel_sizes: list = (9, 5, 5), colorspace: str = "rgb"):
        super().__init__()
        k1, k2, k3 = kernel_sizes
        channels = check_colorspace(colorspace)
        self.luma = colorspace == "ycbcr"
        # Same-size padding (the paper's valid convolutions would shrink the output).
        self.body = nn.Sequential(
            nn.Conv2d(channels, num_features, k1, padding=k1 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(num_features, mid_features, k2, padding=k2 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(mid_features, channels, k3, padding=k3 // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.luma:
            y, chroma = split_luma(x)
            return merge_luma(self.body(y), chroma)
        return self.body(x)
