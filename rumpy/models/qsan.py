"""Q-SAN (the original tool's meta-attention SAN): SAN (models/san.py) whose every residual
block in its local-source groups also scales its residual by a meta-attention layer driven by
the degradation metadata (as Q-RCAN and Q-EDSR modify their blocks); the second-order channel
attention, the region non-local blocks and the share-source skips are SAN's own. The original
tool's checkpoints load by name (`original_layout`, models/original_weights.py) into a network
built as the original's: `mean_shift = false`, `q_layer_nonlinearity = true` and
`non_local_pooling = true` (its non-local block max-pools keys and values 2x2: the authors'
code asks for no subsampling, but in 2D its flag is overwritten by a class and so true)."""
from __future__ import annotations

import torch
from torch import nn

from ..limits import count
from .meta_attention import MetaAttention
from .original_weights import OriginalLayout, meta_attention_rules
from .registry import MODELS
from .san import SAN, SecondOrderChannelAttention


class QResBlock(nn.Module):
    def __init__(self, num_features: int, num_metadata: int, nonlinearity: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.attention = MetaAttention(num_metadata, num_features, nonlinearity)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x), metadata)


class QLSRAG(nn.Module):
    def __init__(self, num_features: int, num_blocks: int, reduction: int, num_metadata: int,
                 nonlinearity: bool):
        super().__init__()
        self.blocks = nn.ModuleList(QResBlock(num_features, num_metadata, nonlinearity)
                                    for _ in range(num_blocks))
        self.end = nn.Sequential(SecondOrderChannelAttention(num_features, reduction),
                                 nn.Conv2d(num_features, num_features, 3, padding=1))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.blocks:
            out = block(out, metadata)
        return x + self.end(out)


@MODELS.register("qsan", tasks=("sisr",), limits={
    "num_groups": count(0), "num_blocks": count(0), "num_features": count(8),
    "reduction": count(1, high="num_features"), "max_combined_im_size": count(1)})
class QSAN(SAN):
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, num_groups: int = 20, num_blocks: int = 10,
                 num_features: int = 64, reduction: int = 16,
                 max_combined_im_size: int = 160000, q_layer_nonlinearity: bool = False,
                 mean_shift: bool = True, non_local_pooling: bool = False):
        super().__init__(scale, num_groups, num_blocks, num_features, reduction,
                         max_combined_im_size)
        self.mean_shift, self.q_layer_nonlinearity = mean_shift, q_layer_nonlinearity
        self.non_local_pooling = non_local_pooling
        self.non_local.block.pool = non_local_pooling
        if not mean_shift:  # as the original tool's Q-SAN
            self.sub_mean, self.add_mean = nn.Identity(), nn.Identity()
        self.groups = nn.ModuleList(QLSRAG(num_features, num_blocks, reduction, num_metadata,
                                           q_layer_nonlinearity) for _ in range(num_groups))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        out = self.non_local(x)
        source = out
        for group in self.groups:
            out = group(out, metadata) + self.gamma * source
        return self.add_mean(self.tail(self.non_local(out) + x))

    def original_layout(self) -> OriginalLayout:
        """The original's QSAN: head.0, non_local.non_local (theta, phi.0, g.0, W), RG.G
        (rcab.B: conv_first, q_layer; soca.conv_du; conv_last), gamma, tail. Its forward never
        reads its own conv_last, the groups' gamma or the non-local block's soca."""
        return OriginalLayout(("qsan",), [
            (r"^head\.", "head.0."),
            (r"^non_local\.block\.theta\.", "non_local.non_local.theta."),
            (r"^non_local\.block\.(phi|g)\.", r"non_local.non_local.\g<1>.0."),
            (r"^non_local\.block\.out\.", "non_local.non_local.W."),
            (r"^groups\.(\d+)\.blocks\.(\d+)\.body\.", r"RG.\g<1>.rcab.\g<2>.conv_first."),
            *meta_attention_rules(r"groups\.(\d+)\.blocks\.(\d+)\.attention",
                                  r"RG.\g<1>.rcab.\g<2>.q_layer"),
            (r"^groups\.(\d+)\.end\.0\.gate\.", r"RG.\g<1>.soca.conv_du."),
            (r"^groups\.(\d+)\.end\.1\.", r"RG.\g<1>.conv_last.")],
            unused=(r"^conv_last\.(weight|bias)$", r"^RG\.\d+\.gamma$",
                    r"^non_local\.soca\."),
            settings={"mean_shift": False, "q_layer_nonlinearity": True,
                      "non_local_pooling": True})
