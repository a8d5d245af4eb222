"""TensorBoard event files per node, under <node>/tensorboard/, so `tensorboard --logdir Results`
shows every tree (each node a run named by its path). Tags: train/loss, train/learning_rate,
val/<set>/<metric>[/<target>], step = epoch. A branch's writer first receives the parent's rows
up to the fork; a continued node's writer purges what an earlier process wrote after the epoch
it continues from (TensorBoard's purge_step), so the curves never fork inside one run."""
from __future__ import annotations

import logging

from ..core.declared import declare
from .registry import TRACKERS, Tracker, context, step_values

log = logging.getLogger(__name__)
declare("node", "tensorboard", "the tensorboard tracker")
FOLDER = "tensorboard"


def tag(info) -> str:
    ctx = context(info)
    parts = [ctx["subset"]] + ([ctx["set"]] if "set" in ctx else []) + [info.metric]
    return "/".join(parts + ([info.target] if info.target else []))


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    name = "TensorBoard"

    def __init__(self, writer, eval_sets: list[str]):
        super().__init__(eval_sets)
        self.writer = writer

    @classmethod
    def open(cls, run) -> "TensorBoardTracker | None":
        folder = run.node.path / FOLDER
        fresh = not folder.is_dir() or not any(folder.iterdir())
        try:
            from torch.utils.tensorboard import SummaryWriter

            first = run.plan.start_epoch + 1
            writer = SummaryWriter(str(folder), purge_step=None if fresh else first)
        except Exception as exc:
            log.warning("TensorBoard tracking is off for this run (%s: %s); CSV and PNG logging "
                        "go on", type(exc).__name__, exc)
            return None
        tracker = cls(writer, list(run.loaders.evals))
        if fresh:  # a branch (or a node new to TensorBoard) gets its history so far
            for row in run.plan.rows:
                tracker.track_row(row)
        return tracker

    def track_row(self, row: dict) -> None:
        epoch = int(row["epoch"])
        for info, value in self.columns(row):
            self._safe(self.writer.add_scalar, tag(info), value, epoch)
        self._safe(self.writer.flush)

    def track_steps(self, rows: list[dict]) -> None:
        for row in rows:
            for column, value in step_values(row):
                self._safe(self.writer.add_scalar, f"steps/{column}", value, int(row["step"]))
        self._safe(self.writer.flush)

    def track_images(self, epoch: int, set_name: str, images: list) -> None:
        import numpy as np

        for caption, img in images:
            self._safe(self.writer.add_image, f"samples/{set_name}/{caption}",
                       np.asarray(img.convert("RGB")), epoch, dataformats="HWC")

    def close(self) -> None:
        self._safe(self.writer.close)
