"""SFTMD (Gu et al., "Blind Super-Resolution With Iterative Kernel Correction", CVPR 2019), as
in the authors' code and the original tool: a residual network whose features are modulated by
spatial feature transform (SFT) layers. The degradation code, stretched to the feature size and
concatenated to the features, drives two small branches (conv-LeakyReLU-conv): a gate
sigmoid(gamma) in (0, 1) and a shift beta, giving x * sigmoid(gamma) + beta -- the gate keeps
the trunk's signal at initialisation, where an unbounded gamma near 0 would erase it.

Head: three 3x3 convolutions (LeakyReLU 0.2 between). Each residual block is
SFT-ReLU-Conv-SFT-ReLU-Conv with a skip; after the blocks, the head's features are added back,
one more SFT and a convolution follow, then sub-pixel upsampling (each stage conv, shuffle,
LeakyReLU) and a 9x9 output convolution; the output is clamped to [0, 1] (the paper: 16 blocks
of 64 features). `SFT_type`: 'standard' (above), 'concat' (one convolution of the features and
the code), 'none' (no conditioning: the same trunk as a plain network)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .registry import MODELS
from .srmd import stretch

SFT_TYPES = ("standard", "concat", "none")


class SFTLayer(nn.Module):
    def __init__(self, num_features: int, num_metadata: int, kind: str, hidden: int = 32):
        super().__init__()
        self.kind = kind
        joint = num_features + num_metadata

        def branch() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(joint, hidden, 3, padding=1),
                                 nn.LeakyReLU(0.2, inplace=True),
                                 nn.Conv2d(hidden, num_features, 3, padding=1))
        if kind == "standard":
            self.gamma, self.beta = branch(), branch()
        elif kind == "concat":
            self.conv = nn.Conv2d(joint, num_features, 3, padding=1)

    def forward(self, x: torch.Tensor, code_maps: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        joint = torch.cat([x, code_maps], dim=1)
        if self.kind == "concat":
            return self.conv(joint)
        return x * torch.sigmoid(self.gamma(joint)) + self.beta(joint)


class SFTResBlock(nn.Module):
    def __init__(self, num_features: int, num_metadata: int, kind: str):
        super().__init__()
        self.sft1 = SFTLayer(num_features, num_metadata, kind)
        self.conv1 = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.sft2 = SFTLayer(num_features, num_metadata, kind)
        self.conv2 = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, code_maps: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.sft1(x, code_maps)))
        out = self.conv2(self.act(self.sft2(out, code_maps)))
        return x + out


def _upscale(scale: int, num_features: int) -> nn.Sequential:
    """x2 stages for powers of two, one x3 stage for 3; each conv, pixel shuffle, LeakyReLU."""
    factors = [2] * int(math.log2(scale)) if scale & (scale - 1) == 0 else [scale]
    layers: list[nn.Module] = []
    for f in factors:
        layers += [nn.Conv2d(num_features, num_features * f * f, 3, padding=1),
                   nn.PixelShuffle(f), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


@MODELS.register("sftmd", tasks=("sisr",))
class SFTMD(nn.Module):
    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, num_features: int = 64,
                 num_blocks: int = 16, SFT_type: str = "standard"):  # noqa: N803 (original key)
        super().__init__()
        if SFT_type not in SFT_TYPES:
            raise ValueError(f"SFT_type: expected one of {', '.join(SFT_TYPES)}, got {SFT_type!r}")
        if num_metadata < 1:
            raise ValueError("sftmd needs at least one metadata value per image")
        self.head = nn.Sequential(nn.Conv2d(3, num_features, 3, padding=1),
                                  nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(num_features, num_features, 3, padding=1),
                                  nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(num_features, num_features, 3, padding=1))
        self.blocks = nn.ModuleList(SFTResBlock(num_features, num_metadata, SFT_type)
                                    for _ in range(num_blocks))
        self.sft = SFTLayer(num_features, num_metadata, SFT_type)
        self.conv_mid = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.tail = nn.Sequential(_upscale(scale, num_features),
                                  nn.Conv2d(num_features, 3, 9, padding=4))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        code_maps = stretch(metadata, x)
        feat = self.head(x)
        out = feat
        for block in self.blocks:
            out = block(out, code_maps)
        out = self.conv_mid(self.sft(out + feat, code_maps))
        return self.tail(out).clamp(0.0, 1.0)
