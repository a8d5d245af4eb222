"""SRMD (Zhang, Zuo and Zhang, CVPR 2018): the degradation parameters, each stretched into a
constant LR-sized map, are concatenated to the LR image as extra input channels; a plain
cascade of 3x3 convolutions (the first Conv+ReLU, the middle ones Conv+BN+ReLU, the last Conv to
3 * scale^2 channels) ends in one sub-pixel shuffle. The paper uses 12 layers of 128 features."""
from __future__ import annotations

import torch
from torch import nn

from .registry import MODELS


def stretch(metadata: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """B x M vector -> B x M x H x W maps of constant value, H x W those of `like`."""
    b, m = metadata.shape
    return metadata.view(b, m, 1, 1).expand(b, m, like.shape[-2], like.shape[-1])


@MODELS.register("srmd", tasks=("sisr",))
class SRMD(nn.Module):
    supported_scales = (2, 3, 4)
    pre_upsampled = False
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, num_layers: int = 12,
                 num_features: int = 128):
        super().__init__()
        if num_layers < 3:
            raise ValueError(f"num_layers: expected at least 3 (first, middle, last), got "
                             f"{num_layers}")
        if num_metadata < 1:
            raise ValueError("srmd needs at least one metadata value per image")
        layers: list[nn.Module] = [nn.Conv2d(3 + num_metadata, num_features, 3, padding=1),
                                   nn.ReLU(inplace=True)]
        for _ in range(num_layers - 2):
            layers += [nn.Conv2d(num_features, num_features, 3, padding=1),
                       nn.BatchNorm2d(num_features), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(num_features, 3 * scale * scale, 3, padding=1),
                   nn.PixelShuffle(scale)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x, stretch(metadata, x)], dim=1))
