from __future__ import annotations

from typing import Protocol

import torch

from ..registry import Registry


class Metric(Protocol):
    """A validation metric. Registered with the tasks or task families it serves
    (`tasks=("sisr", "image")`; a name may exist once per task); it states its own direction (`higher_is_better`), which decides "best" and early stopping.

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


def _visible(scopes: tuple[str, ...] | None, scope: tuple[str, ...] | str | None) -> bool:
    if scope is None or scopes is None:
        return True
    return bool(set(scopes) & set((scope,) if isinstance(scope, str) else scope))


def metric_names(scope: tuple[str, ...] | str | None = None) -> list[str]:
    """Display names (PSNR, MAE, ...) of the metrics a task's scopes see, or of all."""
    out: list[str] = []
    for name in METRICS.names(scope):
        for scopes, entry, _ in METRICS.all(name):
            if _visible(scopes, scope) and entry.name not in out:
                out.append(entry.name)
    return out


def smallest_image(names: list[str], border: int, scope: tuple[str, ...] | str | None = None
                   ) -> tuple[int, str, int]:
    """(side, metric, its own minimum): the smallest HR image side that every metric of `names`
    can score, the metric that needs it, and what it needs after protocol metrics lose `border`
    pixels on each side."""
    need = [(METRICS.meta(n, scope).get("min_size", 1) +
             (2 * border if METRICS.get(n, scope).protocol else 0),
             METRICS.get(n, scope).name, METRICS.meta(n, scope).get("min_size", 1))
            for n in names if METRICS.serves(n, scope or ("sisr",))]
    return max(need, default=(1, "", 1))


def higher_is_better(name: str, scope: tuple[str, ...] | str | None = None) -> bool | None:
    """The direction a metric declares; the loss is always lower-is-better; None if unknown
    (or when the tasks that have a metric of this name disagree and no scope says which)."""
    if name.lower() == "loss":
        return False
    directions = {entry.higher_is_better for scopes, entry, _ in METRICS.all(name)
                  if _visible(scopes, scope)}
    return directions.pop() if len(directions) == 1 else None
