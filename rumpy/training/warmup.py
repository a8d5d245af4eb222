"""Learning-rate warmup (training.warmup_steps): the first optimizer steps use a fraction of
the scheduled rate, rising linearly or along a half cosine to 1. It multiplies whatever the
scheduler gives (composes with every scheduler) and depends only on the step count, so a
continue or fork at any step reproduces it without saved state."""
from __future__ import annotations

import contextlib
import math

import torch


class Warmup:
    def __init__(self, steps: int, shape: str = "linear"):
        self.steps, self.shape = steps, shape

    def factor(self, step: int) -> float:
        """The multiplier of optimizer step `step` (1-based)."""
        if step >= self.steps:
            return 1.0
        fraction = step / self.steps
        if self.shape == "cosine":
            return 0.5 * (1.0 - math.cos(math.pi * fraction))
        return fraction


@contextlib.contextmanager
def scaled_lr(optimizer: torch.optim.Optimizer, factor: float):
    """The optimizer steps with its rates times `factor`; the schedule's own rates are put back
    after (chainable schedulers read the current rate to compute the next)."""
    if factor == 1.0:
        yield
        return
    rates = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor
    try:
        yield
    finally:
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate
