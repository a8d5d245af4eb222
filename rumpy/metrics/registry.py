from __future__ import annotations

from typing import Protocol

import torch

from ..registry import Registry


class Metric(Protocol):
    """A validation metric. Registered with its task (`task="sisr"`); it states its own
    direction (`higher_is_better`), which decides "best" and early stopping.

    sisr metrics score a batch image by image: with `protocol` True they receive images prepared
    by the SR protocol (luma or RGB, border cropped: metrics.sr.prepare), else full RGB images;
    both as 8-bit-rounded floats in [0, 255]; they return one value per image.
    regression metrics score a whole set: (N, T) predictions and targets in original units ->
    one value per target."""

    name: str
    higher_is_better: bool
    protocol: bool

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


# Registered factories take (device) and return a Metric.
METRICS: Registry = Registry("metric")


def metric_names(task: str | None = None) -> list[str]:
    """Display names (PSNR, MAE, ...) of the registered metrics, of one task or of all."""
    return [METRICS.get(k).name for k in METRICS
            if task is None or METRICS.meta(k).get("task") == task]


def smallest_image(names: list[str], border: int) -> tuple[int, str, int]:
    """(side, metric, its own minimum): the smallest HR image side that every metric of `names`
    can score, the metric that needs it, and what it needs after protocol metrics lose `border`
    pixels on each side."""
    need = [(METRICS.meta(n).get("min_size", 1) + (2 * border if METRICS.get(n).protocol else 0),
             METRICS.get(n).name, METRICS.meta(n).get("min_size", 1))
            for n in names if n in METRICS]
    return max(need, default=(1, "", 1))


def higher_is_better(name: str) -> bool | None:
    """The direction a metric declares; the loss is always lower-is-better; None if unknown."""
    if name.lower() == "loss":
        return False
    return METRICS.get(name).higher_is_better if name in METRICS else None
