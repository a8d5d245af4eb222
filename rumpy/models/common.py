"""Building blocks shared by several architectures."""
from __future__ import annotations

import math

import torch
from torch import nn

# DIV2K's RGB mean in [0, 1]; EDSR and RCAN subtract it from the input and add it back at the end.
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    def __init__(self, mean: tuple[float, float, float], sign: int):
        super().__init__()
        self.register_buffer("shift", sign * torch.tensor(mean).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: log2(scale) x2 stages for powers of two, one x3 stage for 3."""

    def __init__(self, scale: int, num_features: int):
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_features, 4 * num_features, 3, padding=1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_features, 9 * num_features, 3, padding=1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"sub-pixel upsampler supports scales 2^n and 3, got {scale}")
        super().__init__(*layers)


class ParaCALayer(nn.Module):
    """Meta-attention as the original's 1x1 convolutions on the code (names and widths as its
    q_layer.py with the ReLUs on, as its DAN restorers and Q-ELAN build it): widths step from
    the code towards the channels, ReLU between, sigmoid last."""

    def __init__(self, channels: int, num_metadata: int, num_layers: int):
        super().__init__()
        layers: list[nn.Module] = []
        widths = [num_metadata]
        for i, multiplier in enumerate(range(num_layers, 0, -1)):
            widths.append((channels - num_metadata) // multiplier + num_metadata
                          if num_metadata > 15 else channels // multiplier)
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 1))
            if multiplier != 1:
                layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Sigmoid())
        self.attribute_integrator = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return x * self.attribute_integrator(code)
