"""Q-RCAN (Aquilina et al. 2021): RCAN (residual groups of channel-attention blocks) whose every
block also scales its residual by a meta-attention layer driven by the degradation metadata,
after the block's own channel attention (models/meta_attention.py). The original tool's
checkpoints load by name (`original_layout`, models/original_weights.py) into a network built
as the original's: `mean_shift = false`, `q_layer_nonlinearity = true`, `res_scale = 1`."""
from __future__ import annotations

import torch
from torch import nn

from .common import DIV2K_MEAN, MeanShift, Upsampler
from .meta_attention import MetaAttention
from .original_weights import OriginalLayout, meta_attention_rules
from .rcan import ChannelAttention
from .registry import MODELS


class QRCAB(nn.Module):
    def __init__(self, num_features: int, reduction: int, res_scale: float, num_metadata: int,
                 nonlinearity: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
            ChannelAttention(num_features, reduction),
        )
        self.attention = MetaAttention(num_metadata, num_features, nonlinearity)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x), metadata) * self.res_scale


class QResidualGroup(nn.Module):
    def __init__(self, num_features: int, num_blocks: int, reduction: int, res_scale: float,
                 num_metadata: int, nonlinearity: bool):
        super().__init__()
        self.blocks = nn.ModuleList(QRCAB(num_features, reduction, res_scale, num_metadata,
                                          nonlinearity) for _ in range(num_blocks))
        self.end = nn.Conv2d(num_features, num_features, 3, padding=1)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.blocks:
            out = block(out, metadata)
        return x + self.end(out)


@MODELS.register("qrcan", tasks=("sisr",))
class QRCAN(nn.Module):
    supported_scales = (2, 3, 4, 8)
    pre_upsampled = False
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, num_groups: int = 10, num_blocks: int = 20,
                 num_features: int = 64, reduction: int = 16, res_scale: float = 1.0,
                 q_layer_nonlinearity: bool = False, mean_shift: bool = True):
        super().__init__()
        self.mean_shift, self.q_layer_nonlinearity = mean_shift, q_layer_nonlinearity
        self.res_scale = res_scale
        # the original tool's Q-RCAN has no mean shift
        self.sub_mean = MeanShift(DIV2K_MEAN, -1) if mean_shift else nn.Identity()
        self.add_mean = MeanShift(DIV2K_MEAN, +1) if mean_shift else nn.Identity()
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.groups = nn.ModuleList(QResidualGroup(num_features, num_blocks, reduction, res_scale,
                                                   num_metadata, q_layer_nonlinearity)
                                    for _ in range(num_groups))
        self.body_end = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.tail = nn.Sequential(Upsampler(scale, num_features),
                                  nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        out = x
        for group in self.groups:
            out = group(out, metadata)
        return self.add_mean(self.tail(x + self.body_end(out)))

    def original_layout(self) -> OriginalLayout:
        """The original's QRCAN (style 'standard', include_q_layer): head.0, body.G.body.B
        (body, final_body.conv_du, q_node), body.G.final_body, final_body, tail. Its blocks
        add their residual unscaled."""
        return OriginalLayout(("qrcan", "qpircan"), group_rules("groups", "body") + [
            (r"^head\.", "head.0."), (r"^body_end\.", "final_body.")],
            settings={"mean_shift": False, "q_layer_nonlinearity": True, "res_scale": 1.0})


def group_rules(rumpy: str, original: str) -> list[tuple[str, str]]:
    """QResidualGroup's keys under `rumpy`.G as the original's QResidualGroup under
    `original`.G (its QRCAB: body, final_body = channel attention, q_node)."""
    block = rf"^{rumpy}\.(\d+)\.blocks\.(\d+)"
    into = rf"{original}.\g<1>.body.\g<2>"
    return [(rf"{block}\.body\.3\.gate\.1\.", rf"{into}.final_body.conv_du.0."),
            (rf"{block}\.body\.3\.gate\.3\.", rf"{into}.final_body.conv_du.2."),
            (rf"{block}\.body\.", rf"{into}.body."),
            *meta_attention_rules(rf"{rumpy}\.(\d+)\.blocks\.(\d+)\.attention",
                                  rf"{original}.\g<1>.body.\g<2>.q_node"),
            (rf"^{rumpy}\.(\d+)\.end\.", rf"{original}.\g<1>.final_body.")]
