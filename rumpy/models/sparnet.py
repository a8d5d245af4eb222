"""SPARNet (Chen et al., "Learning Spatial Attention for Face Super-Resolution", IEEE TIP 2020) and
Q-SPARNet, the original tool's variant whose residual blocks are also scaled by meta-attention
(models/meta_attention.py). Face SR on the bicubic-upsampled image, at its size: an encoder of
strided pre-activation residual blocks, a body, a decoder of nearest-upsampling blocks; each
block's residual is weighted by a spatial attention map drawn by an hourglass. Module names are
Face-SPARNet's and the original tool's, so their weights load (Q-SPARNet's meta-attention layers
are rumpy's, as in qrcan; the original tool's Q-SPARNet checkpoints load by name through
`original_layout`, models/original_weights.py)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..limits import count
from .meta_attention import MetaAttention
from .original_weights import OriginalLayout, meta_attention_rules
from .registry import MODELS

NORMS = ("bn", "in", "gn", "pixel", "none")
ACTIVATIONS = ("relu", "leakyrelu", "prelu", "selu", "none")
ATTENTIONS = ("spar", "spar3d")
HOURGLASS_CHANNELS = 64  # fixed in the published network


class _PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2, dim=1)


class NormLayer(nn.Module):
    def __init__(self, channels: int, norm_type: str = "bn"):
        super().__init__()
        if norm_type == "bn":
            self.norm = nn.BatchNorm2d(channels)
        elif norm_type == "in":
            self.norm = nn.InstanceNorm2d(channels, affine=True)
        elif norm_type == "gn":
            self.norm = nn.GroupNorm(32, channels, affine=True)
        elif norm_type == "pixel":
            self.norm = _PixelNorm()
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ReluLayer(nn.Module):
    def __init__(self, channels: int, relu_type: str = "relu"):
        super().__init__()
        self.func = {"relu": lambda: nn.ReLU(True), "leakyrelu": lambda: nn.LeakyReLU(0.2, True),
                     "prelu": lambda: nn.PReLU(channels), "selu": lambda: nn.SELU(True),
                     "none": nn.Identity}[relu_type]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)


class ConvLayer(nn.Module):
    """Reflection-padded convolution, then norm and activation; `scale` "down" strides by 2,
    "up" doubles the size (nearest) first."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, scale: str = "none",
                 norm_type: str = "none", relu_type: str = "none"):
        super().__init__()
        self.up = scale == "up"
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        # a norm with its own shift makes the bias redundant (as published)
        self.conv2d = nn.Conv2d(c_in, c_out, kernel_size, 2 if scale == "down" else 1,
                                bias=norm_type in ("pixel", "none"))
        self.relu = ReluLayer(c_out, relu_type)
        self.norm = NormLayer(c_out, norm_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.relu(self.norm(self.conv2d(self.reflection_pad(x))))


class HourGlassBlock(nn.Module):
    """An attention map (1 channel for "spar", one per channel for "spar3d") from a recursive
    hourglass of `depth` levels; the input times the map."""

    def __init__(self, depth: int, c_in: int, c_out: int, norm_type: str, relu_type: str):
        super().__init__()
        self.depth = depth
        kw = {"norm_type": norm_type, "relu_type": relu_type}
        mid = HOURGLASS_CHANNELS
        for level in range(depth, 0, -1):  # named b1_<level> ... as in the published weights
            c1 = c_in if level == depth else mid
            self.add_module(f"b1_{level}", ConvLayer(c1, mid, **kw))
            self.add_module(f"b2_{level}", ConvLayer(c1, mid, scale="down", **kw))
            if level == 1:
                self.add_module("b2_plus_1", ConvLayer(mid, mid, **kw))
            self.add_module(f"b3_{level}", ConvLayer(mid, mid, scale="up", **kw))
        if depth:
            self.out_block = nn.Sequential(ConvLayer(mid, c_out), nn.Sigmoid())

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up1 = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](x)
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        up2 = self._modules[f"b3_{level}"](low)
        if up2.shape[2:] != up1.shape[2:]:  # an odd size rounded up on the way down
            up2 = F.interpolate(up2, up1.shape[2:])
        return up1 + up2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.depth:
            return x
        return x * self.out_block(self._level(self.depth, x))


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, relu_type: str, norm_type: str, scale: str = "none",
                 hg_depth: int = 2, att_name: str = "spar", num_metadata: int | None = None):
        super().__init__()
        kw = {"norm_type": norm_type, "relu_type": relu_type}
        self.shortcut_func = (nn.Identity() if scale == "none" and c_in == c_out
                              else ConvLayer(c_in, c_out, 3, scale))
        self.preact_func = nn.Sequential(NormLayer(c_in, norm_type), ReluLayer(c_in, relu_type))
        first, second = {"down": ("none", "down"), "up": ("up", "none")}.get(scale, ("none", "none"))
        self.conv1 = ConvLayer(c_in, c_out, 3, first, **kw)
        self.conv2 = ConvLayer(c_out, c_out, 3, second, norm_type=norm_type, relu_type="none")
        self.att_func = HourGlassBlock(hg_depth, c_out, 1 if att_name == "spar" else c_out, **kw)
        if num_metadata:
            self.metadata_attention = MetaAttention(num_metadata, c_out, nonlinearity=True)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        out = self.shortcut_func(x) + self.att_func(self.conv2(self.conv1(self.preact_func(x))))
        if hasattr(self, "metadata_attention"):
            out = self.metadata_attention(out, metadata)
        return out


def _log2(n: int) -> int:
    return max(n, 1).bit_length() - 1


_LIMITS = {"min_ch": count(1), "max_ch": count("min_ch"), "in_size": count(1),
           "out_size": count(1), "min_feat_size": count(1), "res_depth": count(0),
           "bottleneck_size": count(1, high=64)}


class _SPARNet(nn.Module):
    """Both variants; `num_metadata` set: meta-attention in every block (the encoder's only, with
    `metadata_encoder_only`)."""
    pre_upsampled = True
    supported_scales = None  # it sees the bicubic-upsampled image

    def __init__(self, min_ch: int, max_ch: int, in_size: int, out_size: int, min_feat_size: int,
                 res_depth: int, relu_type: str, norm_type: str, att_name: str,
                 bottleneck_size: int, num_metadata: int | None, metadata_encoder_only: bool):
        super().__init__()
        for key, value, allowed in (("relu_type", relu_type, ACTIVATIONS),
                                    ("norm_type", norm_type, NORMS),
                                    ("att_name", att_name, ATTENTIONS)):
            if value not in allowed:
                raise ValueError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
        if in_size != out_size:
            raise ValueError(f"out_size: expected in_size ({in_size}): the network keeps the size "
                             f"of the bicubic-upsampled image it is given, got {out_size}")
        steps = _log2(in_size // min_feat_size)
        depth = _log2(64 // bottleneck_size)
        if steps > depth + 1:
            raise ValueError(f"bottleneck_size: {bottleneck_size} leaves no attention hourglass "
                             f"for {steps} downsampling steps (in_size / min_feat_size); expected "
                             f"at most {64 >> max(steps - 1, 0)}")
        if res_depth + 3 < steps:
            raise ValueError(f"res_depth: expected at least {steps - 3} for {steps} downsampling "
                             f"steps, got {res_depth}")
        if norm_type == "gn" and min_ch % 32:
            raise ValueError("norm_type: 'gn' uses 32 groups: min_ch and max_ch must be "
                             "multiples of 32")
        clip = lambda c: max(min_ch, min(c, max_ch))  # noqa: E731
        kw = {"norm_type": norm_type, "relu_type": relu_type, "att_name": att_name}
        inner = None if metadata_encoder_only else num_metadata
        n_ch = clip(max_ch // (steps + 1))
        encoder: list[nn.Module] = [ConvLayer(3, n_ch, 3)]
        hg = depth
        for _ in range(steps):
            encoder.append(ResidualBlock(clip(n_ch), clip(n_ch * 2), scale="down", hg_depth=hg,
                                         num_metadata=num_metadata, **kw))
            n_ch, hg = n_ch * 2, hg - 1
        hg += 1
        self.encoder = nn.Sequential(*encoder)
        self.res_layers = nn.Sequential(*(ResidualBlock(clip(n_ch), clip(n_ch), hg_depth=hg,
                                                        num_metadata=inner, **kw)
                                          for _ in range(res_depth + 3 - steps)))
        decoder = []
        for _ in range(steps):
            hg += 1
            decoder.append(ResidualBlock(clip(n_ch), clip(n_ch // 2), scale="up", hg_depth=hg,
                                         num_metadata=inner, **kw))
            n_ch //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_conv = ConvLayer(clip(n_ch), 3, 3)
        # Any image size: padded to what the strides and the deepest hourglass need, cropped back
        # (a no-op at the published 128x128).
        self.multiple = 2 ** steps
        self.min_side = 2 ** (depth + 2)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h = max(-(-h // self.multiple) * self.multiple, self.min_side) - h
        pad_w = max(-(-w // self.multiple) * self.multiple, self.min_side) - w
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.encoder[0](x)
        for block in (*self.encoder[1:], *self.res_layers, *self.decoder):
            out = block(out, metadata)
        return self.out_conv(out)[..., :h, :w]


@MODELS.register("sparnet", tasks=("sisr",), limits=_LIMITS)
class SPARNet(_SPARNet):
    def __init__(self, scale: int, min_ch: int = 32, max_ch: int = 128, in_size: int = 128,
                 out_size: int = 128, min_feat_size: int = 16, res_depth: int = 10,
                 relu_type: str = "leakyrelu", norm_type: str = "bn", att_name: str = "spar",
                 bottleneck_size: int = 4):
        super().__init__(min_ch, max_ch, in_size, out_size, min_feat_size, res_depth, relu_type,
                         norm_type, att_name, bottleneck_size, None, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


@MODELS.register("qsparnet", tasks=("sisr",), limits=_LIMITS)
class QSPARNet(_SPARNet):
    takes_metadata = True

    def __init__(self, scale: int, num_metadata: int, min_ch: int = 32, max_ch: int = 128,
                 in_size: int = 128, out_size: int = 128, min_feat_size: int = 16,
                 res_depth: int = 10, relu_type: str = "leakyrelu", norm_type: str = "bn",
                 att_name: str = "spar", bottleneck_size: int = 4,
                 metadata_encoder_only: bool = False):
        super().__init__(min_ch, max_ch, in_size, out_size, min_feat_size, res_depth, relu_type,
                         norm_type, att_name, bottleneck_size, num_metadata,
                         metadata_encoder_only)

    def forward(self, x: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return super().forward(x, metadata)

    def original_layout(self) -> OriginalLayout:
        """The original's QSPARNet: the same names but meta-attention's."""
        return OriginalLayout(("qsparnet",), meta_attention_rules(
            r"(?P<at>.*)\.metadata_attention", r"\g<at>.metadata_attention"))
