"""TensorBoard event files per node, under <node>/tensorboard/, so `tensorboard --logdir Results`
shows every tree (each node a run named by its path). Tags: train/loss, train/learning_rate,
val/<set>/<metric>[/<target>], step = epoch (a step-based run: its step). A branch's writer first receives the parent's rows
up to the fork; a continued node's writer purges what an earlier process wrote after the epoch
it continues from (TensorBoard's purge_step), so the curves never fork inside one run, and
first receives the rows summary.csv has that the folder lacks (epochs a killed process or a
full disk never got to TensorBoard). Step curves (steps.csv) go to <node>/tensorboard/steps/
with the optimizer step as x axis, purged and caught up the same way by steps. A writer that
fails (full disk) is one warning line: TensorBoard's writer thread would otherwise print its
traceback."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..core.declared import declare
from .registry import TRACKERS, Tracker, context, step_values, x_of

log = logging.getLogger(__name__)
declare("node", "tensorboard", "the tensorboard tracker")
FOLDER = "tensorboard"


def warm() -> None:
    """TensorBoard's writer import, made while the run is being set up (output worker)."""
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401


def tag(info) -> str:
    ctx = context(info)
    parts = [ctx["subset"]] + ([ctx["set"]] if "set" in ctx else []) + [info.metric]
    return "/".join(parts + ([info.target] if info.target else []))


def _raise(exc: Exception) -> None:
    raise exc


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    name = "TensorBoard"

    def __init__(self, writer, eval_sets: list[str], steps_folder=None, steps_purge=None):
        super().__init__(eval_sets)
        self.writer = writer
        # Step curves have their own x axis (optimizer steps), so their own writer: a continue
        # purges each writer's events from its own restart point
        self._steps_folder, self._steps_purge, self._steps_writer = steps_folder, steps_purge, None

    @classmethod
    def open(cls, run) -> "TensorBoardTracker | None":
        folder = run.node.path / FOLDER
        fresh = not folder.is_dir() or not any(folder.iterdir())
        _quiet_writer_threads()  # before the writer: its first write is in its thread
        try:
            from torch.utils.tensorboard import SummaryWriter

            t = run.cfg.training  # the x axis counts a step-based run's steps
            first = run.plan.start_epoch * (t.eval_every_n_steps if t.num_iterations else 1) + 1
            writer = SummaryWriter(str(folder), purge_step=None if fresh else first)
        except Exception as exc:
            log.warning("TensorBoard tracking is off for this run (%s: %s); CSV and PNG logging "
                        "go on", type(exc).__name__, exc)
            return None
        steps = folder / "steps"
        steps_fresh = not steps.is_dir() or not any(steps.iterdir())
        # the steps the node started with (the worker may open trackers after training began)
        start = run.start_step
        tracker = cls(writer, list(run.eval_sets), steps, None if steps_fresh else start + 1)
        # a branch (or a node new to TensorBoard) gets its history so far; a continued node
        # the epochs its folder lacks
        done = 0 if fresh else last_epoch(folder)
        for row in run.plan.rows:
            if x_of(row) > done:
                tracker.track_row(row)
        done = 0 if steps_fresh else last_epoch(steps)  # its x axis counts steps
        from ..core.steps import read_steps
        rows = [r for r in read_steps(run.folder.steps) if done < int(r["step"]) <= start]
        if rows:
            tracker.track_steps(rows)
        return tracker

    def track_row(self, row: dict) -> None:
        x = x_of(row)
        for info, value in self.columns(row):
            self._safe(self.writer.add_scalar, tag(info), value, x)
        self._safe(self.writer.flush)

    def track_steps(self, rows: list[dict]) -> None:
        if self._steps_writer is None:
            from torch.utils.tensorboard import SummaryWriter
            try:
                self._steps_writer = SummaryWriter(str(self._steps_folder),
                                                   purge_step=self._steps_purge)
            except Exception as exc:
                self._safe(_raise, exc)
                return
        for row in rows:
            for column, value in step_values(row):
                self._safe(self._steps_writer.add_scalar, f"steps/{column}", value,
                           int(row["step"]))
        self._safe(self._steps_writer.flush)

    def track_images(self, epoch: int, set_name: str, images: list,
                     step: int | None = None) -> None:
        import numpy as np

        for caption, img in images:
            self._safe(self.writer.add_image, f"samples/{set_name}/{caption}",
                       np.asarray(img.convert("RGB")), epoch if step is None else step,
                       dataformats="HWC")

    def close(self) -> None:
        self._safe(self.writer.close)
        if self._steps_writer is not None:
            self._safe(self._steps_writer.close)


def last_epoch(folder: Path) -> int:
    """The newest epoch the node's TensorBoard folder holds (0 when none); shared with
    `rumpy track` (replay.py)."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    try:
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        steps = [e.step for tag in events.Tags().get("scalars", []) for e in events.Scalars(tag)]
    except Exception as exc:  # damaged event files: everything is sent again
        log.warning("%s cannot be read (%s); its epochs are sent again", folder, exc)
        return 0
    return max(steps, default=0)


def _quiet_writer_threads() -> None:
    """TensorBoard writes from a thread of its own; when a write fails (a full disk) the
    thread ends with a ~30-line traceback through threading.excepthook. The writer raises the
    same error at its next call, which is the tracker's one warning (Tracker._safe, or "off
    for this run" when it happens while opening): the thread's own report is dropped."""
    previous = threading.excepthook
    if getattr(previous, "rumpy_tensorboard", False):
        return

    def hook(args) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread":
            log.debug("TensorBoard's writer thread ended: %s", args.exc_value)
            return
        previous(args)

    hook.rumpy_tensorboard = True
    threading.excepthook = hook
