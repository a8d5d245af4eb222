"""Q-EDSR (Aquilina et al. 2021): EDSR whose every residual block scales its residual by a
meta-attention layer driven by the degradation metadata (models/meta_attention.py); otherwise
EDSR (no batch norm, residual scaling, sub-pixel upsampling). The original tool's checkpoints
load by name (`original_layout`, models/original_weights.py) into a network built as the
original's: `mean_shift = false` (and its `res_scale`, `q_layer_nonlinearity`)."""
from __future__ import annotations

import torch
from torch import nn

from .common import DIV2K_MEAN, MeanShift, Upsampler
from .meta_attention import MetaAttention
from .original_weights import OriginalLayout, meta_attention_rules
from .registry import MODELS


class QResBlock(nn.Module):
    def __init__(self, num_features: int, res_scale: float, num_metadata: int,
                 nonlinearity: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.attention = MetaAttention(num_metadata, num_features, nonlinearity)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x), metadata) * self.res_scale


@MODELS.register("qedsr", tasks=("sisr",))
class QEDSR(nn.Module):
    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, num_features: int = 64,
                 num_blocks: int = 16, res_scale: float = 0.1,
                 q_layer_nonlinearity: bool = False, mean_shift: bool = True):
        super().__init__()
        self.mean_shift, self.q_layer_nonlinearity = mean_shift, q_layer_nonlinearity
        # the original tool's Q-EDSR has no mean shift
        self.sub_mean = MeanShift(DIV2K_MEAN, -1) if mean_shift else nn.Identity()
        self.add_mean = MeanShift(DIV2K_MEAN, +1) if mean_shift else nn.Identity()
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.blocks = nn.ModuleList(QResBlock(num_features, res_scale, num_metadata,
                                              q_layer_nonlinearity) for _ in range(num_blocks))
        self.body_end = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.tail = nn.Sequential(Upsampler(scale, num_features),
                                  nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        out = x
        for block in self.blocks:
            out = block(out, metadata)
        return self.add_mean(self.tail(x + self.body_end(out)))

    def original_layout(self) -> OriginalLayout:
        """The original's QEDSR: head, body.B (body, attention_layer), final_body, tail."""
        return OriginalLayout(("qedsr",), [
            (r"^blocks\.(\d+)\.body\.", r"body.\g<1>.body."),
            *meta_attention_rules(r"blocks\.(\d+)\.attention", r"body.\g<1>.attention_layer"),
            (r"^body_end\.", "final_body.")], settings={"mean_shift": False})
