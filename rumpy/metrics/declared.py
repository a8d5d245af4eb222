"""The package's metrics as declarations that import no torch: name, direction, tasks and
limits, and the module that implements each. This is the one place a built-in metric's direction
is written: its class takes it from here when it registers (`builtin`), and the readers of
results (`rumpy tree`, `export`, `table`, `report`) learn directions from here without importing
torch (core/columns.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Declared:
    name: str                    # display name, as in summary columns
    higher_is_better: bool
    tasks: tuple[str, ...]
    module: str                  # rumpy.metrics.<module> registers the implementation
    meta: dict[str, Any] = field(default_factory=dict)


# min_size: the smallest image side (after the protocol's border crop) with a finite value;
# min_samples: the smallest set with a defined value (a variance needs two samples).
BUILTIN: dict[str, Declared] = {
    "psnr": Declared("PSNR", True, ("sisr", "image"), "sr", {"min_size": 1}),
    "ssim": Declared("SSIM", True, ("sisr", "image"), "sr", {"min_size": 11}),  # an 11x11 window
    # AlexNet's stride-4 11x11 convolution and two 3x3 max-pools need 31 pixels.
    "lpips": Declared("LPIPS", False, ("sisr", "image"), "lpips", {"min_size": 31}),
    "mae": Declared("MAE", False, ("regression",), "regression"),
    "rmse": Declared("RMSE", False, ("regression",), "regression"),
    "r2": Declared("R2", True, ("regression",), "regression", {"min_samples": 2}),
    "pearson": Declared("Pearson", True, ("regression",), "regression", {"min_samples": 2}),
}

IMPLEMENTATIONS = tuple(dict.fromkeys(d.module for d in BUILTIN.values()))


def builtin(key: str) -> Callable[[T], T]:
    """Registers a package metric's class under its declaration (name, direction, tasks)."""
    from .registry import METRICS

    info = BUILTIN[key]

    def add(cls: T) -> T:
        cls.name = info.name  # type: ignore[attr-defined]
        cls.higher_is_better = info.higher_is_better  # type: ignore[attr-defined]
        return METRICS.register(key, tasks=info.tasks, **info.meta)(cls)

    return add
