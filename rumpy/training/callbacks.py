"""What happens around the epoch loop, as small callbacks in a fixed order: the loop trains and
validates; each callback turns the epoch's summary row (and evaluation result) into one output.
A new output is a new callback, never an edit of the loop."""
from __future__ import annotations

import logging

from ..results.columns import eval_columns
from ..results.plots import plot_summary
from ..results.examples import save_example
from ..results.samples import save_images
from ..results.summary import write_table
from ..tree.node import INTERRUPTED
from ..tree.plan import finish_replacement
from ..tree.retention import prune_checkpoints
from ..tracking import TRACKERS
from .saving import CheckpointWriter

log = logging.getLogger(__name__)


class Callback:
    def on_start(self, run) -> None:
        """Before the first epoch (after the node's summary holds the rows it starts with)."""

    def on_epoch_end(self, run, epoch: int, row: dict, result) -> None:
        """After an epoch; `result` is the evaluation (None when the epoch did not validate)."""

    def on_end(self, run, state: str) -> None:
        """The run ends: finished, stopped_early or interrupted."""

    def close(self, run) -> None:
        """Always called last, also after an error."""


class Status(Callback):
    """Epochs done and the best so far in status.json (the state itself is the loop's)."""

    def on_epoch_end(self, run, epoch, row, result) -> None:
        run.node.set_status(epochs_done=epoch, best=run.best_info())


class Trackers(Callback):
    """Opens the configured trackers (each failure only warns) and sends them every row."""

    def on_start(self, run) -> None:
        t = run.cfg.training
        names = [n for n in t.trackers if n != "aim" or t.aim_track]
        run.trackers = [tr for tr in (TRACKERS.get(n).open(run) for n in names) if tr is not None]

    def on_epoch_end(self, run, epoch, row, result) -> None:
        for tracker in run.trackers:
            tracker.track_row(row)

    def close(self, run) -> None:
        for tracker in run.trackers:
            tracker.close()


class Baseline(Callback):
    """The task's baseline (bicubic, mean predictor) per eval set: logged and saved once a run."""

    def on_start(self, run) -> None:
        if not run.loaders.evals:
            return
        means = run.task.baseline()
        sets = list(run.loaders.evals)
        keys = [k for k in run.task.summary_keys() if k != "loss"]
        rows = [{"set": s, **means[s]} for s in sets]
        name = run.task.baseline_name
        write_table(run.folder.outputs / f"{name.replace(' ', '_')}_baseline.csv", rows,
                    ["set"] + keys)
        for row in rows:
            log.info("%s baseline on %s: %s", name, row["set"],
                     ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row))
        run.baselines = eval_columns(means, sets)


class Checkpoint(Callback):
    """The epoch's checkpoint, carrying its summary row; a mid-epoch checkpoint is then stale."""

    def on_start(self, run) -> None:
        self.writer = CheckpointWriter(run)

    def on_epoch_end(self, run, epoch, row, result) -> None:
        self.writer.save(run, epoch, row)
        finish_replacement(run.plan)
        interrupted = run.folder.models / INTERRUPTED
        interrupted.unlink(missing_ok=True)
        interrupted.with_name(INTERRUPTED + ".sha256").unlink(missing_ok=True)


class Summary(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        run.summary.append(row)


class Retention(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        t = run.cfg.training
        prune_checkpoints(run.node, t.keep_every_n_epochs, t.keep_last_n, run.best.best_epoch)


class PerSample(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        if result is not None:
            write_table(run.folder.outputs / f"{run.task.per_sample_file}_epoch_{epoch}.csv",
                        result.per_sample, run.task.per_sample_columns())


class _Optional(Callback):
    """An output that is nice to have: when writing it fails (a stray file where its folder
    goes, an unwritable file), training goes on after one warning. A full disk still ends the
    run at the next checkpoint, which is what matters."""

    _warned = False

    def on_epoch_end(self, run, epoch, row, result) -> None:
        try:
            self.write(run, epoch, row, result)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s: could not write (%s); training goes on without it",
                            type(self).__name__, exc)

    def write(self, run, epoch, row, result) -> None:
        raise NotImplementedError


class Visuals(_Optional):
    """The task's images of a validation (sample strips, scatter plots): saved and tracked."""

    def write(self, run, epoch, row, result) -> None:
        if result is None or not run.cfg.training.save_samples:
            return
        for set_name, images in run.task.visuals(result).items():
            for tracker in run.trackers:
                tracker.track_images(epoch, set_name, images)
            save_images(run.folder.samples(epoch), set_name, images)


class Examples(_Optional):
    """The val_example_indices images of each validation, one strip per image over the epochs."""

    def write(self, run, epoch, row, result) -> None:
        if result is None:
            return
        for set_name, samples in result.examples.items():
            for sample in samples:
                save_example(run.folder.outputs / "examples" / set_name, epoch, sample)


class Plots(_Optional):
    def write(self, run, epoch, row, result) -> None:
        if run.cfg.training.logging == "visual":
            fork = run.node.fork_epoch if run.node.rel else None
            plot_summary(run.summary.rows, run.summary.columns, run.folder.outputs, run.baselines,
                         fork, run.task.baseline_name)


class EpochLog(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        run.progress.end_epoch(row)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                          if k.startswith("val-") and isinstance(v, float))
        log.info("epoch %d/%d: train-loss %.5f, lr %.3g%s (%.1fs)", epoch,
                 run.cfg.training.num_epochs, row["train-loss"], row["learning-rate"],
                 f", {shown}" if shown else "", row["epoch-time"])

    def on_end(self, run, state) -> None:
        run.progress.close()
        best = run.best
        if state == "interrupted":
            log.warning("%s; continue with --continue_from_epoch last", run.stop_reason)
        elif state == "diverged":
            log.error("%s", run.stop_reason)
        elif best.best is None:
            log.info("finished: %s", run.folder.root)
        else:
            base = run.baselines.get(best.column)
            versus = f" ({run.task.baseline_name} {base:.4f})" if base is not None else ""
            log.info("finished: best %s %.4f at epoch %d%s; run folder %s", best.column,
                     best.best, best.best_epoch, versus, run.folder.root)


class EarlyStopping(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        early = run.early_stop
        if early is not None and early.bad_validations >= run.cfg.training.early_stopping_patience:
            run.stop_reason = (f"early stopping: {early.column} did not improve by more than "
                               f"{early.min_delta:g} for {early.bad_validations} validations; "
                               f"best {early.best:.4f} at epoch {early.best_epoch}")
            log.info("%s", run.stop_reason)


def default_callbacks() -> list[Callback]:
    """In order: the checkpoint first (it carries the row, so a kill after it loses nothing),
    then the summary, retention, outputs, trackers, the log line, status, early stopping."""
    return [Trackers(), Baseline(), Checkpoint(), Summary(), Retention(), PerSample(), Visuals(),
            Examples(), Plots(), EpochLog(), Status(), EarlyStopping()]
