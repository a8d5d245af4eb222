from __future__ import annotations

from typing import Protocol

import torch

from ..registry import Registry


class Metric(Protocol):
    """Per-image values for a batch of 8-bit-rounded images (floats in [0, 255], Bx3xHxW)."""

    name: str
    higher_is_better: bool

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor: ...


# Registered factories take (scale, channel, crop_border, device) and return a Metric.
METRICS: Registry = Registry("metric")
