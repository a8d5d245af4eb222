"""HAN (Niu et al., ECCV 2020, "Single Image Super-Resolution via a Holistic Attention Network"):
RCAN's residual groups, whose intermediate features a layer attention module (LAM) weighs against
each other, beside a channel-spatial attention module (CSAM, a 3D convolution) on the body's
last features; the two are fused and added to the shallow features before upsampling."""
from __future__ import annotations

import torch
from torch import nn

from ..limits import count, number
from .common import DIV2K_MEAN, MeanShift, Upsampler
from .rcan import ResidualGroup
from .registry import MODELS


class LayerAttention(nn.Module):
    """Each of N stacked feature maps becomes itself plus a learnt share (`gamma`, starting at 0
    as in the paper's code) of an attention-weighted sum of all N, the weights from their
    N x N correlations."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, stacked: torch.Tensor) -> torch.Tensor:
        """B x N x C x H x W -> the B x N x N weights (rows sum to 1)."""
        flat = stacked.flatten(2)
        energy = torch.bmm(flat, flat.transpose(1, 2))
        # the authors' form (as DANet's channel attention): the softmax of each row's maximum
        # minus the correlations
        energy = energy.amax(dim=-1, keepdim=True) - energy
        return torch.softmax(energy, dim=-1)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        mixed = torch.bmm(self.attention(stacked), stacked.flatten(2)).view_as(stacked)
        return self.gamma * mixed + stacked


class ChannelSpatialAttention(nn.Module):
    """A 3 x 3 x 3 convolution over the (channel, height, width) volume gives a sigmoid mask;
    the features are scaled by 1 + gamma * mask (gamma starts at 0, as in the paper's code)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3, padding=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.sigmoid(self.conv(x.unsqueeze(1))).squeeze(1)
        return x * (self.gamma * mask) + x


# the same ranges as rcan's (models/rcan.py), whose groups HAN is built from
@MODELS.register("han", tasks=("sisr",), limits={
    "num_groups": count(0), "num_blocks": count(0), "num_features": count(1),
    "reduction": count(1, high="num_features"), "res_scale": number()})
class HAN(nn.Module):
    """LAM sees num_groups + 1 feature maps: every group's output and the body's closing
    convolution's, as the authors' code has it (their fusion layer takes 11 x 64 channels)."""

    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False

    def __init__(self, scale: int, num_groups: int = 10, num_blocks: int = 20,
                 num_features: int = 64, reduction: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.sub_mean = MeanShift(DIV2K_MEAN, -1)
        self.add_mean = MeanShift(DIV2K_MEAN, +1)
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.groups = nn.ModuleList(ResidualGroup(num_features, num_blocks, reduction, res_scale)
                                    for _ in range(num_groups))
        self.body_end = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.layer_attention = LayerAttention()
        self.layer_fuse = nn.Conv2d((num_groups + 1) * num_features, num_features, 3, padding=1)
        self.channel_spatial_attention = ChannelSpatialAttention()
        self.fuse = nn.Conv2d(2 * num_features, num_features, 3, padding=1)
        self.tail = nn.Sequential(Upsampler(scale, num_features),
                                  nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        out = x
        features = []
        for group in self.groups:
            out = group(out)
            features.append(out)
        out = self.body_end(out)
        features.append(out)
        layers = self.layer_attention(torch.stack(features, dim=1))
        layers = self.layer_fuse(layers.flatten(1, 2))
        out = self.fuse(torch.cat([self.channel_spatial_attention(out), layers], dim=1))
        return self.add_mean(self.tail(out + x))
