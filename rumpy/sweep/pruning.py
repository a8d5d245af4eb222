"""The hook between a trial's training and its Optuna trial: a training Callback that reports
each validated epoch's value (the mean over the trial's seeds so far, trial.py) and, when the
pruner says so, asks the loop to stop at this epoch boundary. The loop then ends the node as
stopped early, with its checkpoints; `on_end` turns that into the node state `pruned`."""
from __future__ import annotations

import logging
import math

from ..training.callbacks import Callback
from .trial import TRIAL_STATUS, step_value

log = logging.getLogger(__name__)
PRUNED_REASON = "pruned"


class TrialReport(Callback):
    def __init__(self, trial, index: int, num_epochs: int, metric: str,
                 earlier: list[dict[int, float]], prune: bool, status: dict):
        self.trial, self.index, self.num_epochs = trial, index, num_epochs
        self.metric, self.earlier, self.prune = metric, earlier, prune
        self.status = status
        self.pruned = False
        self.pending = False  # the pruner had said so before a kill: stop at the next boundary

    def _report(self, epoch: int, value) -> float | None:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        mean = step_value(self.earlier, epoch, float(value))
        step = self.index * self.num_epochs + epoch
        if step not in self.trial.storage.get_trial(self.trial._trial_id).intermediate_values:
            self.trial.report(mean, step)
        return mean

    def on_start(self, run) -> None:
        run.node.set_status(**self.status)
        # Epochs the node already has (a retry after a kill) that never reached the study.
        for row in run.summary.rows:
            self._report(row["epoch"], row.get(self.metric))
        if self.prune and run.summary.rows and self.trial.should_prune():
            self.pending = True

    def on_epoch_end(self, run, epoch, row, result) -> str | None:
        mean = self._report(epoch, row.get(self.metric))
        if not self.prune or epoch >= self.num_epochs:
            return None  # a node that reached its last epoch is complete, not pruned
        if self.pending or (mean is not None and self.trial.should_prune()):
            shown = "n/a" if mean is None else f"{mean:.4f}"
            reason = (f"{PRUNED_REASON}: optuna trial {self.trial.number} at epoch {epoch} "
                      f"({self.metric} {shown}, mean over the seeds so far)")
            self.pruned = True
            log.info("%s", reason)
            return reason  # a stop request: the loop stops at this epoch boundary
        return None

    def on_end(self, run, state) -> None:
        if self.pruned and state == "stopped_early":
            run.node.set_status(state="pruned")


def pruned_by_search(status: dict) -> bool:
    """A node the pruner stopped: state pruned, or stopped early for it (killed before the
    state was rewritten)."""
    return status.get("state") == "pruned" or (
        status.get("state") == "stopped_early" and
        str(status.get("stop_reason") or "").startswith(PRUNED_REASON) and
        TRIAL_STATUS in status)
