from __future__ import annotations

from typing import Protocol

import torch

from ..registry import Registry


class Metric(Protocol):
    """Per-image values for a batch. With `protocol` True the metric receives images prepared by
    the SR protocol (luma or RGB, border cropped: metrics.sr.prepare), else full RGB images; both
    as 8-bit-rounded floats in [0, 255]."""

    name: str
    higher_is_better: bool
    protocol: bool

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor: ...


# Registered factories take (device) and return a Metric.
METRICS: Registry = Registry("metric")
