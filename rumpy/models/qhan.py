"""Q-HAN (the original tool's meta-attention HAN): HAN (models/han.py) whose every residual
channel-attention block also scales its residual by a meta-attention layer driven by the
degradation metadata, exactly as Q-RCAN modifies RCAN's blocks; the layer attention and
channel-spatial attention are HAN's own. The original tool's checkpoints load by name
(`original_layout`, models/original_weights.py) into a network built as the original's:
`mean_shift = false`, `q_layer_nonlinearity = true`, `res_scale = 1`."""
from __future__ import annotations

import torch
from torch import nn

from ..limits import count, number
from .han import HAN
from .original_weights import OriginalLayout
from .qrcan import QResidualGroup, group_rules
from .registry import MODELS


@MODELS.register("qhan", tasks=("sisr",), limits={
    "num_groups": count(0), "num_blocks": count(0), "num_features": count(1),
    "reduction": count(1, high="num_features"), "res_scale": number()})
class QHAN(HAN):
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, num_groups: int = 10, num_blocks: int = 20,
                 num_features: int = 64, reduction: int = 16, res_scale: float = 1.0,
                 q_layer_nonlinearity: bool = False, mean_shift: bool = True):
        super().__init__(scale, num_groups, num_blocks, num_features, reduction, res_scale)
        self.mean_shift, self.q_layer_nonlinearity = mean_shift, q_layer_nonlinearity
        self.res_scale = res_scale
        if not mean_shift:  # as the original tool's Q-HAN
            self.sub_mean, self.add_mean = nn.Identity(), nn.Identity()
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

    def original_layout(self) -> OriginalLayout:
        """The original's QHAN (include_q_layer): head.0, body.G as QRCAN's groups, the
        closing convolution as body.<groups>, la, last_conv, csa, last, tail. Its layer
        attention stacks the newest features first: last_conv's input blocks are reversed."""
        groups = len(self.groups)

        def reverse(weight: torch.Tensor) -> torch.Tensor:
            out, stacked = weight.shape[:2]
            return weight.reshape(out, groups + 1, stacked // (groups + 1),
                                  *weight.shape[2:]).flip(1).reshape(weight.shape)

        return OriginalLayout(("qhan",), group_rules("groups", "body") + [
            (r"^head\.", "head.0."), (r"^body_end\.", f"body.{groups}."),
            (r"^layer_attention\.", "la."), (r"^layer_fuse\.", "last_conv."),
            (r"^channel_spatial_attention\.", "csa."), (r"^fuse\.", "last.")],
            special={"layer_fuse.weight": (reverse, lambda shape: shape)},
            settings={"mean_shift": False, "q_layer_nonlinearity": True, "res_scale": 1.0})
