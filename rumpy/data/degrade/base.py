"""What every degradation operation is: options checked against its defaults (a one-line
ConfigError for each bad one), parameters drawn from a seeded generator, and an application that
depends only on those parameters, so a metadata row re-applies to reproduce its image."""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...config.errors import ConfigError
from ...registry import did_you_mean


class Operation:
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    # keys of the original tool's configs that change nothing here (devices, PCA bookkeeping)
    ignored: ClassVar[tuple[str, ...]] = ("device",)
    # metadata columns and their types, in CSV order
    columns: ClassVar[dict[str, type]] = {}

    def __init__(self, options: dict, scale: int, source: str, where: str):
        self.source, self.where, self.scale = source, where, scale
        allowed = list(self.defaults) + list(self.ignored)
        for key in options:
            if key not in allowed:
                self.fail(key, f"unknown option of '{self.name}'{did_you_mean(key, allowed)} "
                               f"(options: {', '.join(sorted(self.defaults))})")
        self.options = {**self.defaults, **{k: v for k, v in options.items() if k in self.defaults}}
        for key, default in self.defaults.items():
            self._check_type(key, self.options[key], default)
        self.check()

    # -- options -----------------------------------------------------------------------------
    def fail(self, key: str, message: str):
        raise ConfigError(self.source, f"{self.where}.{key}" if key else self.where, message)

    def _check_type(self, key: str, value: Any, default: Any) -> None:
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, list):
            ok = isinstance(value, list)
        else:  # None: optional, checked by the operation
            ok = True
        if not ok:
            self.fail(key, f"expected {type(default).__name__}, got {value!r}")

    def range_option(self, key: str, low: float | None = None, high: float | None = None
                     ) -> tuple[float, float]:
        value = self.options[key]
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or value[0] > value[1]):
            self.fail(key, f"expected [low, high] with low <= high, got {value!r}")
        if (low is not None and value[0] < low) or (high is not None and value[1] > high):
            self.fail(key, f"expected values within [{low}, {high}], got {value!r}")
        return float(value[0]), float(value[1])

    def check(self) -> None:
        """Operation-specific checks of self.options."""

    # -- parameters and application -------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """HxWx3 uint8 -> HxWx3 uint8 (each step returns 8-bit images, as the original's PIL
        images between steps)."""
        raise NotImplementedError

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """The size this step turns an h x w image into; ValueError when it cannot take it."""
        return h, w

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters as the metadata CSV writes them."""
        return params

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The configured range of each numeric column, for normalising metadata to [0, 1]."""
        return {}

    def resolved(self) -> dict[str, Any]:
        return dict(self.options)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float 8-bit levels -> uint8: saturated and rounded half up."""
    return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)
