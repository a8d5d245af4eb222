"""What happens around the epoch loop, as small callbacks in a fixed order: the loop trains and
validates; each callback turns the epoch's summary row (and evaluation result) into one output.
A new output is a new callback, never an edit of the loop."""
from __future__ import annotations

import logging
import time

from ..config.periods import where
from ..core.columns import eval_columns
from ..core.summary import write_table
from ..tree.node import INTERRUPTED
from ..tree.apply import finish_replacement
from ..tree.retention import prune_checkpoints
from .output_worker import PATIENCE_S, OutputWorker
from .saving import CheckpointWriter

log = logging.getLogger(__name__)
INTERRUPTED_PATIENCE_S = 15.0  # a stopped run waits this long at most for an idle output worker
OPEN_PATIENCE_S = 3.0  # the first step waits this long at most for the trackers to open


class Callback:
    def on_start(self, run) -> None:
        """Before the first epoch (after the node's summary holds the rows it starts with)."""

    def on_epoch_end(self, run, epoch: int, row: dict, result) -> str | None:
        """After an epoch; `result` is the evaluation (None when the epoch did not validate).
        A callback that wants the run to stop returns why (a stop request); the loop decides.
        Callbacks keep their own state: they never write the Run."""

    def last_outputs(self, run, state: str) -> None:
        """The run ends; called on every callback before any `on_end`: submit the background
        outputs held back for the end (the output worker is drained in `on_end`)."""

    def on_end(self, run, state: str) -> None:
        """The run ends: finished, stopped_early or interrupted."""

    def close(self, run) -> None:
        """Always called last, also after an error."""


class Status(Callback):
    """Epochs done (and a step-based run's steps) and the best so far in status.json (the
    state itself is the loop's)."""

    def on_epoch_end(self, run, epoch, row, result) -> None:
        steps = {"steps_done": row["step"]} if "step" in row else {}
        run.node.set_status(epochs_done=epoch, best=run.best_info(), **steps)


class Baseline(Callback):
    """The task's baseline (bicubic, mean predictor) per eval set: logged and saved once a run;
    `columns` ({summary column: value}) is read by the plots and the final log line."""

    def __init__(self):
        self.columns: dict[str, float] = {}

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
        self.columns = eval_columns(means, sets)


class Checkpoint(Callback):
    """The epoch's checkpoint, carrying its summary row; a mid-epoch checkpoint is then stale.
    A replaced run and interrupted.pt go only once the checkpoint is on disk (on CUDA it is
    written in the background: these follow it there, in order)."""

    def on_start(self, run) -> None:
        self.writer = CheckpointWriter(run)

    def on_epoch_end(self, run, epoch, row, result) -> None:
        self.writer.save(run, epoch, row)
        run.after_checkpoints(_saved, run.plan, run.folder.models / INTERRUPTED)

    def on_end(self, run, state) -> None:
        run.flush_checkpoints()

    def close(self, run) -> None:
        try:  # an error ended the run: what is queued is still written, errors only logged
            run.flush_checkpoints(raise_errors=False)
        finally:
            run.saver = None


def _saved(plan, interrupted) -> None:
    finish_replacement(plan)
    interrupted.unlink(missing_ok=True)
    interrupted.with_name(INTERRUPTED + ".sha256").unlink(missing_ok=True)


class Summary(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        run.summary.append(row)


class Retention(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        t = run.cfg.training  # after the epoch's checkpoint is written: it reads the folder
        run.after_checkpoints(prune_checkpoints, run.node, t.keep_every_n_epochs, t.keep_last_n,
                              run.best.best_epoch)


class PerSample(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        if result is not None:
            write_table(run.folder.outputs / f"{run.task.per_sample_file}_epoch_{epoch}.csv",
                        result.per_sample, run.task.per_sample_columns())


def output_due(run, epoch: int) -> bool:
    """write_output_nth_epoch: sample images and plots every N-th epoch, and at the last."""
    every = run.cfg.training.write_output_nth_epoch
    return epoch % every == 0 or epoch == run.cfg.training.num_epochs


class Throttle:
    """output_interval_s: an output made at most every so many seconds of training (and at the
    last epoch); `waiting` says one was skipped since, for `last_outputs` to make at the end."""

    def __init__(self):
        self.since = time.monotonic()
        self.waiting = False

    def start(self) -> None:
        self.since, self.waiting = time.monotonic(), False

    def now(self, run, epoch: int) -> bool:
        t = run.cfg.training
        if epoch == t.num_epochs or time.monotonic() - self.since >= t.output_interval_s:
            self.since, self.waiting = time.monotonic(), False
            return True
        self.waiting = True
        return False


class Background(Callback):
    """The public extension point for outputs that take time (drawing, encoding, a network
    call): subclass it and `self.worker.submit(run, fn, *args, key=...)` a module-level
    `fn(state, *args)` with picklable arguments from `on_epoch_end`. The output is made by the
    run's output worker (training/output_worker.py): training never waits for it, and when it
    fails, training goes on after one warning. A full disk still ends
    the run at the next checkpoint, which is what matters. The worker is drained when the run
    ends (finished, stopped or interrupted), so every epoch's output is complete."""

    def __init__(self, worker: OutputWorker | None = None):
        self.worker = worker if worker is not None else OutputWorker()

    def on_end(self, run, state) -> None:
        # A stop request (Ctrl+C, a scheduler's SIGTERM with its grace period) must end the
        # process promptly however loaded the machine: the outputs get a short patience.
        self.worker.drain(patience=INTERRUPTED_PATIENCE_S if state == "interrupted" else
                          PATIENCE_S)

    def close(self, run) -> None:
        if self.worker.finished:
            return
        try:  # an error ended the run: what is queued gets a short while only
            self.worker.drain(patience=10.0, fail=False)
        finally:
            self.worker.abort()


class Trackers(Background):
    """Opens the configured trackers in the output worker and sends them every row (each
    failure only warns). A worker started early (early_output_worker: Aim is imported during
    the set-up) opens them at once, and the first step waits for it (OutputsReady); otherwise
    they open once the first epoch has ended, so that epoch does not share the CPU with Aim's
    import."""

    active = False

    def on_start(self, run) -> None:
        t = run.cfg.training
        names = [n for n in t.trackers if n != "aim" or t.aim_track]
        self.active = bool(names)
        if self.active:
            if run.step_log is not None:
                run.step_log.tracked = True
            self.worker.submit(run, _open_trackers, names, label="Trackers", hold=True)

    def on_epoch_end(self, run, epoch, row, result) -> None:
        if self.active:
            self._steps(run)
            self.worker.submit(run, _track_row, dict(row), label="Trackers")

    def on_end(self, run, state) -> None:
        if self.active:
            self._steps(run)
        super().on_end(run, state)

    def _steps(self, run) -> None:
        rows = run.step_log.take() if run.step_log is not None else []
        if rows:
            self.worker.submit(run, _track_steps, rows, label="Trackers")


class OutputsReady(Callback):
    """The first step waits up to OPEN_PATIENCE_S for an early-started worker to finish what the
    callbacks' `on_start` gave it (opening the trackers: ~0.1 s for Aim, beside the baseline's
    computation): a worker still busy once training runs gets slivers of CPU at its low
    priority, and each stalls the training threads at their next barrier."""

    def __init__(self, worker: OutputWorker):
        self.worker = worker

    def on_start(self, run) -> None:
        if self.worker.started:
            self.worker.settle(OPEN_PATIENCE_S)


class Visuals(Background):
    """The task's images of a validation (sample strips, scatter plots): saved and tracked, at
    most every output_interval_s (the latest skipped ones at the end). The images are made only
    when they are sent: a skipped validation's result (its few samples) is just held."""

    def __init__(self, worker: OutputWorker | None = None):
        super().__init__(worker)
        self.throttle = Throttle()
        self.held: tuple | None = None

    def on_start(self, run) -> None:
        self.throttle.start()

    def on_epoch_end(self, run, epoch, row, result) -> None:
        if result is None or not run.cfg.training.save_samples or not output_due(run, epoch) \
                or not result.outputs:
            return
        self.held = (epoch, row.get("step"), run.folder.samples(epoch), result)
        if self.throttle.now(run, epoch):
            self.last_outputs(run, None)

    def last_outputs(self, run, state) -> None:
        if self.held is not None:
            epoch, step, folder, result = self.held
            self.held = None
            images = run.task.visuals(result)
            if images:
                self.worker.submit(run, _visuals, epoch, step, folder, images, label="Visuals")


class Examples(Background):
    """The val_example_indices images of each validation, one strip per image over the epochs
    (at every validation: following them is their point)."""

    def on_epoch_end(self, run, epoch, row, result) -> None:
        if result is not None and result.examples:
            self.worker.submit(run, _examples, epoch, run.folder.outputs / "examples",
                               dict(result.examples), label="Examples")


class Plots(Background):
    """The summary plots: at most every output_interval_s of training, and at the end of the run
    however it ends (finished, stopped early, interrupted); a plot that the next one replaces
    before it is drawn is skipped."""

    def __init__(self, worker: OutputWorker | None = None, baseline: Baseline | None = None):
        super().__init__(worker)
        self.baseline = baseline or Baseline()
        self.throttle = Throttle()

    def on_start(self, run) -> None:
        self.throttle.start()

    def on_epoch_end(self, run, epoch, row, result) -> None:
        if output_due(run, epoch) and run.cfg.training.logging == "visual" \
                and self.throttle.now(run, epoch):
            self._draw(run)

    def last_outputs(self, run, state) -> None:
        if self.throttle.waiting:
            self.throttle.waiting = False
            self._draw(run)

    def _draw(self, run) -> None:
        fork = run.node.fork_epoch if run.node.rel else None
        self.worker.submit(run, _plot, list(run.summary.rows), list(run.summary.columns),
                           run.folder.outputs, dict(self.baseline.columns), fork,
                           run.task.baseline_name, key="plots", label="Plots")


# -- jobs, run in the output worker: fn(state, *args) -------------------------------------------
def _open_trackers(state, names: list[str]) -> None:
    from ..tracking import TRACKERS

    for name in names:
        tracker = TRACKERS.get(name).open(state["run"])
        if tracker is not None:
            state["trackers"].append(tracker)
            if tracker.status:  # status.json has one writer: the training process
                state["send"](("status", tracker.status))


def _track_row(state, row: dict) -> None:
    for tracker in state["trackers"]:
        tracker.track_row(row)


def _track_steps(state, rows: list[dict]) -> None:
    for tracker in state["trackers"]:
        tracker.track_steps(rows)


def _visuals(state, epoch: int, step, folder, images: dict) -> None:
    from ..results.samples import save_images

    # a step-based run's images sit at their optimizer step, beside its curves
    at = {} if step in (None, "") else {"step": int(step)}
    for set_name, pictures in images.items():
        # the files are encoded on the worker's write thread (copies: trackers encode these)
        state["write"]("Visuals", save_images, folder, set_name,
                       [(name, img.copy()) for name, img in pictures])
        for tracker in state["trackers"]:
            tracker.track_images(epoch, set_name, pictures, **at)


def _examples(state, epoch: int, folder, examples: dict) -> None:
    from ..results.examples import save_example

    for set_name, samples in examples.items():
        for sample in samples:
            save_example(folder / set_name, epoch, sample)


def _plot(state, rows, columns, out_dir, baselines, fork, baseline_name) -> None:
    if "plots" not in state:
        from ..results.plots import SummaryPlots

        state["plots"] = SummaryPlots()
    # drawn on the plots' own write thread (the figures are touched there only), beside the
    # sample images
    state["write"]("Plots", state["plots"].draw, rows, columns, out_dir, baselines, fork,
                   baseline_name)


class EpochLog(Callback):
    def __init__(self, baseline: Baseline | None = None):
        self.baseline = baseline or Baseline()

    def on_epoch_end(self, run, epoch, row, result) -> None:
        run.progress.end_epoch(row)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                          if k.startswith("val-") and isinstance(v, float))
        log.info("%s: train-loss %.5f, lr %.3g%s (%.1fs)", where(run.cfg.training, epoch),
                 row["train-loss"], row["learning-rate"],
                 f", {shown}" if shown else "", row["epoch-time"])

    def on_end(self, run, state) -> None:
        run.progress.close()
        best = run.best
        if state == "interrupted":
            again = "the same `rumpy sweep` command again" if run.cfg.sweep else \
                "--continue_from_epoch last"
            log.warning("%s; continue with %s", run.stop_reason, again)
        elif state == "diverged":
            log.error("%s", run.stop_reason)
        elif best.best is None:
            log.info("finished: %s", run.folder.root)
        else:
            base = self.baseline.columns.get(best.column)
            versus = f" ({run.task.baseline_name} {base:.4f})" if base is not None else ""
            at = where(run.cfg.training, best.best_epoch).split("/")[0]
            log.info("finished: best %s %.4f at %s%s; run folder %s", best.column,
                     best.best, at, versus, run.folder.root)


class EarlyStopping(Callback):
    def on_epoch_end(self, run, epoch, row, result) -> None:
        early = run.early_stop
        if early is not None and early.bad_validations >= run.cfg.training.early_stopping_patience:
            reason = (f"early stopping: {early.column} did not improve by more than "
                      f"{early.min_delta:g} for {early.bad_validations} validations; "
                      f"best {early.best:.4f} at epoch {early.best_epoch}")
            log.info("%s", reason)
            return reason
        return None


def early_output_worker(cfg) -> OutputWorker | None:
    """The output worker for a run of `cfg`, started before the run's set-up so that it imports
    what the run's outputs need (each output module's `warm()`: Aim, matplotlib) on the core
    that the single-threaded set-up leaves idle; None when the run makes no background outputs.
    Give it to `default_callbacks`; `abort()` it when the set-up fails."""
    from ..tracking import TRACKERS

    t = cfg.training
    modules = [TRACKERS.get(n).__module__ for n in t.trackers if n != "aim" or t.aim_track]
    if t.logging == "visual":
        modules.append("rumpy.results.plots")
    if t.save_samples:
        modules.append("rumpy.results.samples")
    if not modules:
        return None
    worker = OutputWorker()
    worker.start_early(_warm, modules)
    return worker


def _warm(state, modules: list[str]) -> None:
    import importlib

    for name in modules:
        try:
            warm = getattr(importlib.import_module(name), "warm", None)
            if warm is not None:
                warm()
        except Exception:  # the output's own job says what is wrong, once, when it runs
            pass


def default_callbacks(worker: OutputWorker | None = None) -> list[Callback]:
    """In order: the checkpoint first (it carries the row, so a kill after it loses nothing),
    then the summary, retention, outputs, trackers, the log line, status, early stopping. The
    trackers, sample images, examples and plots share one output worker (`worker`: one started
    early, by early_output_worker); the trackers' `on_end` drains it before the final log
    line."""
    worker = worker if worker is not None else OutputWorker()
    baseline = Baseline()
    # Plots before Visuals: the plots are drawn on their own thread while the images are
    # encoded, which is what the end of a short run waits for
    return [Trackers(worker), baseline, Checkpoint(), Summary(), Retention(), PerSample(),
            Plots(worker, baseline), Visuals(worker), Examples(worker), OutputsReady(worker),
            EpochLog(baseline), Status(), EarlyStopping()]
