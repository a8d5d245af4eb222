"""Pixel losses, found by name in LOSSES."""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

LOSSES: Registry = Registry("loss")


class CharbonnierLoss(nn.Module):
    """sqrt((x - y)^2 + eps^2), averaged: a differentiable L1 (Lai et al., LapSRN)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((x - y) ** 2 + self.eps ** 2).mean()


LOSSES.register("l1")(nn.L1Loss)
LOSSES.register("mse")(nn.MSELoss)
LOSSES.register("charbonnier")(CharbonnierLoss)
