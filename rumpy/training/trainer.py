"""The epoch loop: train -> validate -> checkpoint -> summary.csv -> plots -> samples, with
early stopping, checkpoint retention, Ctrl+C handling and the node's status."""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config.load import to_toml_dict
from ..results.plots import plot_summary
from ..results.samples import save_samples
from ..results.summary import SummaryLog, eval_columns, write_table
from ..tree.node import INTERRUPTED
from ..tracking.aim_tracker import AimTracker
from ..tree.retention import prune_checkpoints
from .checkpoint import rng_state, save_checkpoint
from .handler import NetworkHandler
from .progress import Progress
from .setup import Run

log = logging.getLogger(__name__)


class StopRequest:
    """The first Ctrl+C (SIGINT) or SIGTERM (a job scheduler's pre-emption) asks the loop to
    stop after the current step and save; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s: finishing the current step and saving (again to abort)",
                    signal.Signals(signum).name)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def train_epoch(handler: NetworkHandler, loader, stop: StopRequest | None = None, done: int = 0,
                total: torch.Tensor | None = None,
                progress: Progress | None = None) -> tuple[int, torch.Tensor]:
    """Train one epoch (or its remainder after `done` steps). Returns (steps done, loss sum);
    it returns early when a stop was requested. Losses stay on the device: no per-step sync."""
    if total is None:
        total = torch.zeros((), dtype=torch.float64, device=handler.device)
    steps = done
    for lr, hr in loader:
        total += handler.train_step(lr, hr)
        steps += 1
        if progress is not None:
            progress.step(steps, total)
        if stop is not None and stop.requested:
            break
    return steps, total


def _baseline(run: Run) -> dict[str, float]:
    """Bicubic scores per eval set, logged and saved once per run; {summary column: value}."""
    if not run.loaders.evals:
        return {}
    result = run.evaluator.bicubic_baseline()
    sets = list(run.loaders.evals)
    rows = [{"set": s, **result.means[s]} for s in sets]
    write_table(run.folder.outputs / "bicubic_baseline.csv", rows, ["set"] + run.metric_names)
    for row in rows:
        log.info("bicubic baseline on %s: %s", row["set"],
                 ", ".join(f"{m} {row[m]:.4f}" for m in run.metric_names))
    return eval_columns(result.means, sets)


def _state(run: Run, epoch: int, config_table: dict, **extra) -> dict:
    monitors = {"best": run.best.state_dict()}
    if run.early_stop is not None:
        monitors["early_stop"] = run.early_stop.state_dict()
    return {**run.handler.state_dict(), "epoch": epoch, "rng": rng_state(),
            "config": config_table, "monitors": monitors, **extra}


def _best_info(run: Run) -> dict:
    return {"metric": run.best.column, "value": run.best.best, "epoch": run.best.best_epoch}


def train(run: Run) -> str:
    """Train the node to num_epochs. Returns its final state: finished, stopped_early or
    interrupted (Ctrl+C). The node's lock is released and the tracker closed on the way out."""
    tracker = None
    try:
        with StopRequest() as stop:  # before anything says "running"
            tracker = _open_tracker(run)
            return _train(run, tracker, stop)
    except BaseException as exc:
        run.node.set_status(state="crashed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if tracker is not None:
            tracker.close()
        if run.lock is not None:
            run.lock.release()


def _open_tracker(run: Run) -> AimTracker | None:
    cfg, node, plan = run.cfg, run.node, run.plan
    if not cfg.training.aim_track:
        return None
    parent = node.parent
    lineage = {"experiment_dir": str(node.root), "node": node.rel or ".",
               "parent": (parent.rel or ".") if parent else None,
               "parent_aim_run": parent.status.get("aim_run_hash") if parent else None,
               "fork_epoch": node.fork_epoch if node.rel else None}
    run_hash = node.status.get("aim_run_hash") if plan.kind == "continue" else None
    tracker = AimTracker.open(Path(cfg.training.aim_home), cfg.experiment, node.rel, run_hash,
                              {"config": to_toml_dict(cfg), "lineage": lineage},
                              list(run.loaders.evals))
    if tracker is not None:
        node.set_status(aim_run_hash=tracker.hash)
        if tracker.new_run:  # a branch (or a run new to Aim) gets its history so far
            for row in plan.rows:
                tracker.track_row(row)
    return tracker


def _train(run: Run, tracker: AimTracker | None, stop: StopRequest) -> str:
    cfg, folder, handler, plan = run.cfg, run.folder, run.handler, run.plan
    num_epochs = cfg.training.num_epochs
    eval_sets = list(run.loaders.evals)
    summary = SummaryLog(folder.summary, run.columns, plan.rows)
    summary.write()  # a branch's inherited rows are on disk before its first epoch
    fork = plan.node.fork_epoch if plan.node.rel else None
    run.node.set_status(state="running", started=time.strftime("%Y-%m-%d %H:%M:%S"),
                        epochs_done=plan.start_epoch, best=_best_info(run), stop_reason=None,
                        error=None)
    log.info("training %s (x%d, %.2fM parameters) on %s, epochs %d-%d; node %s",
             cfg.model.name, cfg.scale,
             sum(p.numel() for p in handler.model.parameters()) / 1e6, run.device,
             plan.start_epoch + 1, num_epochs, folder.root)
    baselines = _baseline(run)
    config_table = to_toml_dict(cfg)
    interrupted_ckpt = folder.models / INTERRUPTED
    resume = plan.state if plan.state and "position" in plan.state else None
    stop_reason = None
    batch = cfg.data.batch_size
    progress = Progress(num_epochs, plan.start_epoch)
    with logging_redirect_tqdm(loggers=[logging.getLogger("rumpy")]):
        for epoch in range(plan.start_epoch + 1, num_epochs + 1):
            start = time.perf_counter()
            if resume is not None and resume["epoch"] == epoch:
                done, total = resume["position"], resume["loss_sum"].to(handler.device)
                learning_rate, elapsed = resume["learning_rate"], resume["elapsed"]
                log.info("resuming epoch %d after step %d", epoch, done)
            else:
                done, total, learning_rate, elapsed = 0, None, handler.learning_rate, 0.0
            run.loaders.sampler.set_epoch(epoch, start=done * batch)
            full = done + len(run.loaders.train)
            progress.start_epoch(epoch, done, full)
            steps, total = train_epoch(handler, run.loaders.train, stop, done, total, progress)
            if stop.requested and steps < full:
                save_checkpoint(interrupted_ckpt, _state(
                    run, epoch, config_table, position=steps, loss_sum=total.cpu(),
                    learning_rate=learning_rate, elapsed=elapsed + time.perf_counter() - start))
                run.node.set_status(state="interrupted", epochs_done=epoch - 1,
                                    stop_reason=f"stopped (Ctrl+C/SIGTERM) during epoch {epoch} "
                                                f"(step {steps})")
                progress.close()
                log.warning("interrupted during epoch %d; saved %s. Continue with "
                            "--continue_from_epoch last", epoch, interrupted_ckpt)
                return "interrupted"
            handler.end_epoch()
            row = {"epoch": epoch, "train-loss": total.item() / max(steps, 1),
                   "learning-rate": learning_rate}
            result = None
            if eval_sets and (epoch % cfg.training.eval_frequency == 0 or epoch == num_epochs):
                result = run.evaluator.evaluate(handler)
                row.update(eval_columns(result.means, eval_sets))
            row["epoch-time"] = elapsed + time.perf_counter() - start
            run.best.update(epoch, row)
            if run.early_stop is not None:
                run.early_stop.update(epoch, row)

            save_checkpoint(folder.checkpoint(epoch),
                            _state(run, epoch, config_table, summary_row=dict(row)))
            interrupted_ckpt.unlink(missing_ok=True)
            interrupted_ckpt.with_name(INTERRUPTED + ".sha256").unlink(missing_ok=True)
            summary.append(row)
            prune_checkpoints(run.node, cfg.training.keep_every_n_epochs, run.best.best_epoch)
            _write_outputs(run, epoch, result, tracker)
            if cfg.training.logging == "visual":
                plot_summary(summary.rows, summary.columns, folder.outputs, baselines, fork)
            if tracker is not None:
                tracker.track_row(row)
            progress.end_epoch(row)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                              if k.startswith("val-") and isinstance(v, float))
            log.info("epoch %d/%d: train-loss %.5f, lr %.3g%s (%.1fs)", epoch, num_epochs,
                     row["train-loss"], learning_rate, f", {shown}" if shown else "",
                     row["epoch-time"])
            run.node.set_status(epochs_done=epoch, best=_best_info(run))
            if stop.requested and epoch < num_epochs:
                run.node.set_status(state="interrupted",
                                    stop_reason=f"stopped (Ctrl+C/SIGTERM) after epoch {epoch}")
                progress.close()
                log.warning("interrupted after epoch %d; continue with --continue_from_epoch last",
                            epoch)
                return "interrupted"
            early = run.early_stop
            if early is not None and early.bad_validations >= cfg.training.early_stopping_patience:
                stop_reason = (f"early stopping: {early.column} did not improve by more than "
                               f"{early.min_delta:g} for {early.bad_validations} validations; "
                               f"best {early.best:.4f} at epoch {early.best_epoch}")
                log.info("%s", stop_reason)
                break
    progress.close()
    state = "stopped_early" if stop_reason else "finished"
    run.node.set_status(state=state, stop_reason=stop_reason, best=_best_info(run))
    _report_best(run, baselines)
    return state


def _write_outputs(run: Run, epoch: int, result, tracker: AimTracker | None) -> None:
    """Per-image metrics and sample images of a validation epoch."""
    if result is None:
        return
    write_table(run.folder.outputs / f"per_image_epoch_{epoch}.csv", result.per_image,
                ["set", "image", "loss"] + run.metric_names)
    for set_name, samples in result.samples.items():
        if samples:
            strips = save_samples(run.folder.samples(epoch), set_name, samples)
            if tracker is not None:
                tracker.track_samples(epoch, set_name, strips)


def _report_best(run: Run, baselines: dict[str, float]) -> None:
    best = run.best
    if best.best is None:
        log.info("finished: %s", run.folder.root)
        return
    base = baselines.get(best.column)
    versus = f" (bicubic {base:.4f})" if base is not None else ""
    log.info("finished: best %s %.4f at epoch %d%s; run folder %s", best.column, best.best,
             best.best_epoch, versus, run.folder.root)
