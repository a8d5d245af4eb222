from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from ..registry import Registry
from .declared import BUILTIN, IMPLEMENTATIONS

if TYPE_CHECKING:  # the registry imports no torch: result readers use it (core/columns.py)
    import torch


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


class _Metrics(Registry):
    """The metric registry; the package's implementations (which import torch) are imported at
    the first lookup, so that a process that only reads names and directions never loads them."""

    _loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in IMPLEMENTATIONS:
                importlib.import_module(f"{__package__}.{module}")

    def register(self, name, tasks=None, **meta):
        self._load()  # a plugin's clash with a package metric is found when it registers
        return super().register(name, tasks, **meta)

    def _entry(self, name, scope):
        self._load()
        return super()._entry(name, scope)

    def all(self, name):
        self._load()
        return super().all(name)

    def names(self, scope=None):
        self._load()
        return super().names(scope)

    def serves(self, name, scope):
        self._load()
        return super().serves(name, scope)

    def __contains__(self, name):
        self._load()
        return super().__contains__(name)

    def declared(self) -> list[tuple[str, tuple[str, ...] | None, str, bool]]:
        """(key, tasks, display name, higher_is_better) of every metric known without importing
        an implementation: the package's declarations and what plugins registered so far."""
        out = [(key, d.tasks, d.name, d.higher_is_better) for key, d in BUILTIN.items()]
        for key, entries in self._entries.items():
            out += [(key, scopes, entry.name, entry.higher_is_better)
                    for scopes, entry, _ in entries if key not in BUILTIN]
        return sorted(out, key=lambda e: e[0])


# Registered factories take (device) and return a Metric.
METRICS: _Metrics = _Metrics("metric")


def _visible(scopes: tuple[str, ...] | None, scope: tuple[str, ...] | str | None) -> bool:
    if scope is None or scopes is None:
        return True
    return bool(set(scopes) & set((scope,) if isinstance(scope, str) else scope))


def metric_names(scope: tuple[str, ...] | str | None = None) -> list[str]:
    """Display names (PSNR, MAE, ...) of the metrics a task's scopes see, or of all."""
    out: list[str] = []
    for _, scopes, display, _ in METRICS.declared():
        if _visible(scopes, scope) and display not in out:
            out.append(display)
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
    directions = {higher for key, scopes, _, higher in METRICS.declared()
                  if key == name.lower() and _visible(scopes, scope)}
    return directions.pop() if len(directions) == 1 else None
