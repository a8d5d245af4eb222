"""A small residual CNN for image -> vector regression, such as predicting the Gaussian blur width
of a low-resolution patch (the "degradation predictor" of blind super-resolution).

Layout: stem conv -> residual blocks, with a stride-2 convolution between blocks while the feature
map stays at least 4 pixels on its shorter side (channels double at each, up to 4x the stem's) ->
ReLU -> global average pooling -> [dropout] -> linear head. Global pooling makes the head
independent of the input size, so any H, W works; the downsampling schedule is fixed from
`input_shape` when the model is built."""
from __future__ import annotations

import torch
from torch import nn

from ..limits import FRACTION, count
from .mlp import _is_int, check_common, check_input_shape
from .registry import MODELS

# The widest stage is this many times num_features: past it the parameter count grows fourfold per
# stage for 4x4 maps that carry little more information.
_MAX_WIDTH_FACTOR = 4
_MIN_SIZE = 4  # no downsampling below this: 3x3 convs on 2x2 maps are mostly padding


def _conv_bn_relu(c_in: int, c_out: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class ResidualBlock(nn.Module):
    """x + (conv, [BN], ReLU, conv, [BN])(x), channels and size kept."""

    def __init__(self, channels: int, batch_norm: bool):
        super().__init__()
        layers = _conv_bn_relu(channels, channels, 1, batch_norm)
        layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            last_bn = nn.BatchNorm2d(channels)
            # Each block starts as the identity, so the signal's scale does not grow with depth.
            nn.init.zeros_(last_bn.weight)
            layers.append(last_bn)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@MODELS.register("cnn_regressor", tasks=("regression",), limits={
    "num_features": count(1), "num_blocks": count(1), "dropout": FRACTION})
class CNNRegressor(nn.Module):
    supported_scales = None
    pre_upsampled = False

    def __init__(self, input_shape: list, num_outputs: int, num_features: int = 32,
                 num_blocks: int = 4, batch_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
            raise ValueError("cnn_regressor needs image inputs (channels x height x width), "
                             f"got input shape {input_shape!r}")
        channels, height, width = check_input_shape(input_shape, "cnn_regressor")
        check_common("cnn_regressor", num_outputs, dropout, batch_norm)
        if not _is_int(num_features) or num_features < 1:
            raise ValueError(f"cnn_regressor: num_features must be an integer >= 1, got {num_features!r}")
        if not _is_int(num_blocks) or num_blocks < 1:
            raise ValueError(f"cnn_regressor: num_blocks must be an integer >= 1, got {num_blocks!r}")
        self.input_shape = (channels, height, width)
        self.num_outputs = num_outputs

        layers = _conv_bn_relu(channels, num_features, 1, batch_norm)
        width_now, size = num_features, min(height, width)
        for i in range(num_blocks):
            layers.append(ResidualBlock(width_now, batch_norm))
            # A stride-2, padding-1 3x3 conv maps n pixels to ceil(n / 2).
            if i < num_blocks - 1 and (size + 1) // 2 >= _MIN_SIZE:
                wider = min(2 * width_now, _MAX_WIDTH_FACTOR * num_features)
                layers += _conv_bn_relu(width_now, wider, 2, batch_norm)
                width_now, size = wider, (size + 1) // 2
        # The blocks end on a linear skip sum; rectify before pooling, as pre-activation ResNets do.
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(float(dropout)))
        head.append(nn.Linear(width_now, num_outputs))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_outputs)."""
        return self.head(self.features(x))
