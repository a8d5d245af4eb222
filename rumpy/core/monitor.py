"""Tracking one summary column across validations: the best epoch, and early stopping."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .columns import direction


def infer_mode(column: str, mode: str = "auto", directions: dict[str, str] | None = None) -> str:
    """The mode as given, or the direction the column's metric declares (`directions`: the
    node's own, see core.columns.direction)."""
    if mode != "auto":
        return mode
    found = direction(column, directions)
    if found is None:
        raise ValueError(f"cannot tell whether higher or lower {column} is better; set the mode")
    return found


@dataclass
class Monitor:
    """Best value of `column` so far and validations since it last improved by min_delta."""

    column: str
    mode: str
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    bad_validations: int = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, row: dict) -> bool:
        """Feed one summary row; True when it is a new best. Rows without the column (no
        validation that epoch) and non-finite values (NaN, inf) change nothing."""
        value = row.get(self.column)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.improved(value):
            self.best, self.best_epoch, self.bad_validations = value, epoch, 0
            return True
        self.bad_validations += 1
        return False

    def state_dict(self) -> dict:
        return {"column": self.column, "mode": self.mode, "min_delta": self.min_delta,
                "best": self.best, "best_epoch": self.best_epoch,
                "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict) -> None:
        # Settings come from the current config (they may be changed on continue); only the
        # progress is restored, and only when it watched the same column.
        if state.get("column") == self.column:
            self.best = state["best"]
            self.best_epoch = state["best_epoch"]
            self.bad_validations = state["bad_validations"]

    def replay(self, rows: list[dict]) -> None:
        for row in rows:
            self.update(row["epoch"], row)
