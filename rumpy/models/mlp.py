"""A plain multilayer perceptron for regression from feature vectors (or flattened images).

`input_shape` and `num_outputs` come from the data through the trainer; the other constructor
arguments are what a TOML may set. Every argument is checked here, so a bad config fails when the
model is built with a message naming the parameter, not later inside torch with a shape error."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..limits import FRACTION, count
from .registry import MODELS

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `True` as a layer width is surely a config mistake
    return isinstance(value, int) and not isinstance(value, bool)


def check_input_shape(input_shape: object, model: str) -> tuple[int, ...]:
    """The shape of one sample as a tuple of positive ints, or ValueError naming `input_shape`."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape:
        raise ValueError(f"{model}: input_shape must be a non-empty list of sizes, got {input_shape!r}")
    if not all(_is_int(d) and d > 0 for d in input_shape):
        raise ValueError(f"{model}: input_shape must hold positive integers, got {list(input_shape)!r}")
    return tuple(input_shape)


def check_common(model: str, num_outputs: object, dropout: object, batch_norm: object) -> None:
    """The checks the regression models share; ValueError naming the parameter."""
    if not _is_int(num_outputs) or num_outputs < 1:
        raise ValueError(f"{model}: num_outputs must be an integer >= 1, got {num_outputs!r}")
    if (not isinstance(dropout, (int, float)) or isinstance(dropout, bool)
            or not 0.0 <= dropout < 1.0):
        raise ValueError(f"{model}: dropout must be a number in [0, 1), got {dropout!r}")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"{model}: batch_norm must be true or false, got {batch_norm!r}")


@MODELS.register("mlp", tasks=("regression",), limits={
    "hidden_sizes": count(1, items=0), "dropout": FRACTION})
class MLP(nn.Module):
    """Linear -> [BatchNorm1d] -> activation -> [Dropout] per hidden size, then a linear head.

    Input of any shape (B, *input_shape) is flattened, so images work too (as a baseline)."""

    supported_scales = None
    pre_upsampled = False
    fixed_input_shape = True  # its first layer's width is fixed by input_shape

    def __init__(self, input_shape: list, num_outputs: int, hidden_sizes: list = (64, 64),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        shape = check_input_shape(input_shape, "mlp")
        check_common("mlp", num_outputs, dropout, batch_norm)
        if (not isinstance(hidden_sizes, (list, tuple)) or not hidden_sizes
                or not all(_is_int(h) and h > 0 for h in hidden_sizes)):
            raise ValueError(f"mlp: hidden_sizes must be a non-empty list of positive integers, "
                             f"got {hidden_sizes!r}")
        if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
            raise ValueError(f"mlp: unknown activation {activation!r} "
                             f"(allowed: {', '.join(ACTIVATIONS)})")
        self.input_shape = shape
        self.num_outputs = num_outputs

        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(shape)
        for hidden in hidden_sizes:
            # The bias is redundant before batch norm, which subtracts the mean anyway.
            layers.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(ACTIVATIONS[activation.lower()]())
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            width = hidden
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *input_shape) -> (B, num_outputs)."""
        return self.net(x)
