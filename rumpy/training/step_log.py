"""result_outputs/steps.csv (training.log_every_n_steps = N): a row every N optimizer steps,
and one for the rest of each epoch, with the means over those steps of the training loss and its
terms, the gradient norm (log_grad), the time a step took and how much of it waited for data,
and the learning rate of the last one. The window in progress is kept in a mid-epoch
(Ctrl+C/SIGTERM) checkpoint, so a continue writes the rows an uninterrupted run writes.

Rows are appended one line per write (a kill leaves whole rows); when a run starts, the rows it
starts with are rewritten atomically: a continue cuts its own file back to the checkpoint's step
(rows a killed run wrote after its last checkpoint are trained again), a branch copies its
parent's up to the fork. The values stay on the device between rows: a row costs one sync."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import torch

from ..core.steps import STEP_TIMING_COLUMNS, read_steps
from ..core.summary import INHERITED, format_value
from ..utils.atomic import atomic_write_text



class StepLog:
    def __init__(self, path: Path, every: int, terms: list[str], log_grad: bool):
        self.path, self.every = path, every
        self.columns = ["step", "epoch", "batch", "train-loss", *[f"train-{t}" for t in terms],
                        "learning-rate", *(["grad-norm"] if log_grad else []),
                        *STEP_TIMING_COLUMNS, INHERITED]
        self._file = None
        self.tracked = False  # the trackers take the rows: keep them until they do
        self.start_step = 0  # the optimizer steps the node starts with
        self.pending: list[dict] = []  # rows not yet sent to the trackers

    def start(self, source: Path | None, step: int, branch: bool) -> None:
        """The rows the node starts with: `source`'s (a node folder) up to optimizer step
        `step`. Nothing is written when there are none and logging is off."""
        self.start_step = step
        rows = [r for r in read_steps(source / "result_outputs" / "steps.csv")
                if int(r["step"]) <= step] if source is not None else []
        if branch:
            rows = [{**r, INHERITED: 1} for r in rows]
        extra = [c for r in rows[:1] for c in r if c not in self.columns]
        self.columns = [c for c in self.columns if c not in STEP_TIMING_COLUMNS + (INHERITED,)] \
            + extra + list(STEP_TIMING_COLUMNS) + [INHERITED]
        if not rows and not self.every:
            if source is not None and (self.path.exists() and not branch):
                self.path.unlink()  # a continue from step 0 keeps no rows
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())
        if self.every:
            self._file = open(self.path, "a", newline="")

    def begin(self, handler, epoch: int, batch: int, total: torch.Tensor | None,
              window: dict | None = None) -> None:
        """An epoch starts, or resumes after `batch` batches (`window`: the row in progress
        when it stopped, from state())."""
        self._epoch = epoch
        if window is not None:
            self._at = (window["step"], window["batch"], time.perf_counter(), 0.0)
            self._sums = [torch.tensor(v, dtype=torch.float64, device=handler.device)
                          for v in window["sums"]]
            return
        self._at = (handler.step, batch, time.perf_counter(), 0.0)
        self._sums = self._snapshot(handler, total)

    def state(self) -> dict:
        """The row in progress, for a mid-epoch checkpoint (its timings restart on resume)."""
        return {"step": self._at[0], "batch": self._at[1],
                "sums": [float(v) for v in self._sums]}

    @staticmethod
    def _snapshot(handler, total) -> list[torch.Tensor]:
        zero = torch.zeros((), dtype=torch.float64, device=handler.device)
        values = [zero if total is None else total.detach().double().clone()]
        for name in handler.train_terms:
            entry = handler._terms.get(name)
            values += [zero, zero] if entry is None else \
                [entry[0].detach().clone(), torch.tensor(float(entry[1]), dtype=torch.float64,
                                                         device=handler.device)]
        if handler.log_grad:
            have = handler._grad_sum is not None
            values += [handler._grad_sum.clone() if have else zero,
                       torch.tensor(float(handler._grad_steps if have else 0),
                                    dtype=torch.float64, device=handler.device)]
        return values

    def after_step(self, handler, batch: int, total: torch.Tensor, waited: float,
                   epoch_end: bool = False) -> None:
        """After a batch that ended an optimizer step: a row when the step count is due, or
        at the epoch's end for the steps since the last row."""
        step, at_batch, at_time, at_wait = self._at
        if self._file is None or handler.step == step or \
                (handler.step % self.every and not epoch_end):
            return
        now, steps = time.perf_counter(), handler.step - step
        sums = self._snapshot(handler, total)
        delta = torch.stack([a - b for a, b in zip(sums, self._sums)]).tolist()  # one sync
        row = {"step": handler.step, "epoch": self._epoch, "batch": batch,
               "train-loss": delta[0] / max(batch - at_batch, 1),
               "learning-rate": handler.last_lr, "step-time": (now - at_time) / steps,
               "data-wait": (waited - at_wait) / steps, INHERITED: 0}
        at = 1
        for name in handler.train_terms:
            if delta[at + 1]:
                row[f"train-{name}"] = delta[at] / delta[at + 1]
            at += 2
        if handler.log_grad and delta[at + 1]:
            row["grad-norm"] = delta[at] / delta[at + 1]
        self._file.write(",".join(format_value(row.get(c)) for c in self.columns) + "\n")
        self._file.flush()
        if self.tracked:
            self.pending.append(row)
        self._at, self._sums = (handler.step, batch, now, waited), sums

    def take(self) -> list[dict]:
        """The rows written since the last call (for the trackers)."""
        rows, self.pending = self.pending, []
        return rows

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
