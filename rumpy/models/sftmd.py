"""SFTMD (Gu et al., "Blind Super-Resolution With Iterative Kernel Correction", CVPR 2019): a
residual network whose features are modulated by spatial feature transform (SFT) layers: the
degradation code, stretched to the feature size and concatenated to the features, drives two
small convolution branches giving a per-position scale gamma and shift beta. Every residual
block is SFT-ReLU-Conv-SFT-ReLU-Conv with a skip; one more SFT-Conv follows the blocks; a
sub-pixel upsampler and a 3x3 convolution make the image (the paper: 16 blocks of 64 features).
`SFT_type`: 'standard' (x * gamma + beta), 'multiplicative' (x * gamma), 'additive' (x + beta)."""
from __future__ import annotations

import torch
from torch import nn

from .common import Upsampler
from .registry import MODELS
from .srmd import stretch

SFT_TYPES = ("standard", "multiplicative", "additive")


class SFTLayer(nn.Module):
    def __init__(self, num_features: int, num_metadata: int, kind: str, hidden: int = 32):
        super().__init__()
        self.kind = kind

        def branch() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(num_features + num_metadata, hidden, 3, padding=1),
                                 nn.LeakyReLU(0.1, inplace=True),
                                 nn.Conv2d(hidden, num_features, 3, padding=1))
        self.gamma = branch() if kind in ("standard", "multiplicative") else None
        self.beta = branch() if kind in ("standard", "additive") else None

    def forward(self, x: torch.Tensor, code_maps: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([x, code_maps], dim=1)
        if self.gamma is not None:
            x = x * self.gamma(joint)
        if self.beta is not None:
            x = x + self.beta(joint)
        return x


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
                                  nn.LeakyReLU(0.1, inplace=True))
        self.blocks = nn.ModuleList(SFTResBlock(num_features, num_metadata, SFT_type)
                                    for _ in range(num_blocks))
        self.sft = SFTLayer(num_features, num_metadata, SFT_type)
        self.conv_mid = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.tail = nn.Sequential(Upsampler(scale, num_features), nn.LeakyReLU(0.1, inplace=True),
                                  nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        code_maps = stretch(metadata, x)
        feat = self.head(x)
        out = feat
        for block in self.blocks:
            out = block(out, code_maps)
        out = feat + self.conv_mid(self.sft(out, code_maps))
        return self.tail(out)
