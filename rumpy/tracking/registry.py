"""The tracker interface and registry. A tracker mirrors one result-tree node: `open` receives
the run's RunView (cfg, plan, node, folder, eval_sets, start_step: training/output_worker.py)
and returns None with a warning when it cannot be used; a node that is new to the tracker first
receives the rows it starts with (a branch's inherited history). Trackers run in the output
worker, never on the training process's critical path; what a tracker wants in status.json it
puts in `status`, and the training process writes it. A tracker's module may define `warm()`:
the imports `open` needs, which the worker makes while the run is being set up."""
from __future__ import annotations

import logging

from ..registry import Registry
from ..core.columns import Column, parse

log = logging.getLogger(__name__)
TRACKERS: Registry = Registry("tracker")


class Tracker:
    name = "tracker"

    def __init__(self, eval_sets: list[str]):
        self.eval_sets = eval_sets
        self._warned = False
        self.status: dict = {}  # fields for the node's status.json

    @classmethod
    def open(cls, run) -> "Tracker | None":
        raise NotImplementedError

    def _safe(self, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            if not self._warned:
                log.warning("%s tracking failed (%s: %s); training goes on", self.name,
                            type(exc).__name__, exc)
                self._warned = True

    def columns(self, row: dict):
        """(column info, float value) of a summary row's trackable values."""
        for column, value in row.items():
            info = parse(column, self.eval_sets)
            if info is None or value is None or isinstance(value, str):
                continue
            yield info, float(value)

    def track_row(self, row: dict) -> None:
        raise NotImplementedError

    def track_images(self, epoch: int, set_name: str, images: list,
                     step: int | None = None) -> None:
        """images: (caption, PIL image) pairs of one eval set; `step` (a step-based run's only):
        the validation's optimizer step, the x axis its curves use (x_of)."""

    def track_steps(self, rows: list[dict]) -> None:
        """steps.csv rows (training.log_every_n_steps), with the optimizer step as x axis."""

    def ending(self) -> None:
        """The run's last rows and images are queued: stop background work (a sampling thread)
        so that `close`, which comes after them, need not wait for it."""

    def close(self) -> None:
        pass


STEP_KEYS = ("step", "epoch", "batch", "inherited")


def x_of(row: dict) -> int:
    """A summary row's place on the trackers' x axis: the epoch, or a step-based run's step
    (so its validation curves and its steps.csv curves share one axis)."""
    step = row.get("step")
    return int(float(step)) if step not in (None, "") else int(row["epoch"])


def step_values(row: dict):
    """(column, value) of a steps.csv row's measured values (numbers, or the strings a
    steps.csv read back holds)."""
    for column, value in row.items():
        if column in STEP_KEYS or value is None or value == "":
            continue
        try:
            yield column, float(value)
        except (TypeError, ValueError):
            continue


def context(info: Column) -> dict:
    out = {"subset": info.subset}
    if info.set is not None:
        out["set"] = info.set
    if info.target is not None:
        out["target"] = info.target
    return out
