"""Q-HAN (the original tool's meta-attention HAN): HAN (models/han.py) whose every residual
channel-attention block also scales its residual by a meta-attention layer driven by the
degradation metadata, exactly as Q-RCAN modifies RCAN's blocks; the layer attention and
channel-spatial attention are HAN's own."""
from __future__ import annotations

import torch
from torch import nn

from ..limits import count, number
from .han import HAN
from .qrcan import QResidualGroup
from .registry import MODELS


@MODELS.register("qhan", tasks=("sisr",), limits={
    "num_groups": count(0), "num_blocks": count(0), "num_features": count(1),
    "reduction": count(1, high="num_features"), "res_scale": number()})
class QHAN(HAN):
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, num_groups: int = 10, num_blocks: int = 20,
                 num_features: int = 64, reduction: int = 16, res_scale: float = 1.0,
                 q_layer_nonlinearity: bool = False):
        super().__init__(scale, num_groups, num_blocks, num_features, reduction, res_scale)
        self.groups = nn.ModuleList(QResidualGroup(num_features, num_blocks, reduction, res_scale,
                                                   num_metadata, q_layer_nonlinearity)
                                    for _ in range(num_groups))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        out = x
        features = []
        for group in self.groups:
            out = group(out, metadata)
            features.append(out)
        out = self.body_end(out)
        features.append(out)
        layers = self.layer_attention(torch.stack(features, dim=1))
        layers = self.layer_fuse(layers.flatten(1, 2))
        out = self.fuse(torch.cat([self.channel_spatial_attention(out), layers], dim=1))
        return self.add_mean(self.tail(out + x))
