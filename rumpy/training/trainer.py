"""The epoch loop: train -> validate -> update the monitors -> callbacks (checkpoint, summary,
retention, outputs, trackers, log, status, early stopping), with Ctrl+C/SIGTERM handling and the
node's state (running, finished, stopped_early, interrupted, diverged, crashed)."""
from __future__ import annotations

import functools
import logging
import signal
import threading
import time

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config.periods import where
from ..core.columns import eval_columns, raw_column
from ..core.summary import SummaryLog
from ..tree.node import INTERRUPTED
from ..tree.apply import finish_replacement, restore_replaced
from .callbacks import Callback, default_callbacks
from ..core.checkpoint import save_checkpoint
from ..core.distributed import SINGLE, Dist
from .handler import NetworkHandler
from .progress import Progress
from .setup import Run
from .step_log import StepLog

log = logging.getLogger(__name__)


class StopRequest:
    """The first Ctrl+C (SIGINT) or SIGTERM (a job scheduler's pre-emption) asks the loop to
    stop after the current step and save; a second one (after SAME_REQUEST_S) aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    # A launcher that forwards the job's SIGTERM to its workers (torchrun, srun) delivers it twice:
    # a repeat this soon is the same request, not a second one.
    SAME_REQUEST_S = 2.0

    def __init__(self):
        self.requested = False
        self._first = 0.0
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self._first < self.SAME_REQUEST_S:
                return
            raise KeyboardInterrupt
        self.requested = True
        self._first = time.monotonic()
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
                total: torch.Tensor | None = None, progress: Progress | None = None,
                watch: bool = False, dist: Dist = SINGLE, full: int | None = None,
                step_log: StepLog | None = None, epoch: int = 0, window: dict | None = None
                ) -> tuple[int, torch.Tensor, torch.Tensor | None, float]:
    """Train one epoch (or its remainder after `done` steps). Returns (steps done, loss sum,
    first step whose loss was not finite (0 = none; None unless `watch`), seconds spent waiting
    for batches); it returns early when a stop was requested (on any rank: data-parallel ranks
    agree after every step). Losses stay on the device: no per-step sync in one process."""
    if total is None:
        total = torch.zeros((), dtype=torch.float64, device=handler.device)
    bad = torch.zeros((), dtype=torch.long, device=handler.device) if watch else None
    steps = done
    full = done + len(loader) if full is None else full  # the epoch's batches
    waited = 0.0
    if step_log is not None:
        step_log.begin(handler, epoch, done, total, window)
    batches = iter(handler.feed(loader))
    while True:
        # The wait for data: the loader's workers, and on CUDA the copy (a GPU that outruns
        # its input shows here, not as a slow step)
        before = time.perf_counter()
        try:
            batch = next(batches)
            waited += time.perf_counter() - before
        except StopIteration:
            break
        except RuntimeError:
            if stop is not None and stop.requested:
                break  # workers killed with the process group: stop here, the steps so far count
            raise
        loss = handler.train_step(batch, remaining=full - steps)
        total += loss
        steps += 1
        if watch:  # on the device: remembers the first non-finite step without a sync
            bad = torch.where((bad == 0) & ~torch.isfinite(loss), steps, bad)
        if progress is not None:
            progress.step(steps, total)
        if handler.accumulating:  # a stop waits for the cycle's optimizer step
            continue
        if step_log is not None:
            step_log.after_step(handler, steps, total, waited)
        if stop is not None and dist.any(stop.requested, handler.device):
            stop.requested = True
            break
    if step_log is not None and steps == full:
        step_log.after_step(handler, steps, total, waited, epoch_end=True)
    return steps, total, bad, waited


def train(run: Run, callbacks: list[Callback] | None = None) -> str:
    """Train the node to num_epochs. Returns its final state: finished, stopped_early or
    interrupted (Ctrl+C/SIGTERM). The node's lock is released and trackers closed on the way
    out; an error marks the node crashed. Under data parallelism every rank trains and only
    rank 0 writes (callbacks, status)."""
    main = run.dist.is_main
    callbacks = (default_callbacks() if callbacks is None else callbacks) if main else []
    try:
        with StopRequest() as stop:  # before anything says "running"
            if main:
                run.summary = SummaryLog(run.folder.summary, run.columns, run.plan.rows)
                run.summary.write()  # a branch's inherited rows are on disk before epoch 1
                directions = run.task.column_directions()  # for readers without the model
                if directions:
                    run.node.set_status(directions=directions)
                run.node.set_status(state="running", started=time.strftime("%Y-%m-%d %H:%M:%S"),
                                    epochs_done=run.plan.start_epoch, best=run.best_info(),
                                    stop_reason=None, error=None)
            processes = f" x {run.dist.world} processes" if run.dist.enabled else ""
            count = sum(p.numel() for p in run.handler.model.parameters())
            t, first = run.cfg.training, run.plan.start_epoch
            span = (f"steps {first * t.eval_every_n_steps + 1}-{t.num_iterations} (validating "
                    f"every {t.eval_every_n_steps})" if t.num_iterations else
                    f"epochs {first + 1}-{t.num_epochs}")
            log.info("training %s (%s, %s parameters) on %s%s, %s; node %s",
                     run.cfg.model.name, run.task.describe(),
                     f"{count / 1e6:.2f}M" if count >= 10_000 else f"{count:,}", run.device,
                     processes, span, run.folder.root)
            if main:  # the rows it starts with are on disk before the trackers open
                run.step_log = StepLog(run.folder.steps, run.cfg.training.log_every_n_steps,
                                       run.handler.train_terms, run.cfg.training.log_grad)
                run.step_log.start(run.plan.steps_from, run.handler.step,
                                   branch=run.plan.kind == "branch")
            for callback in callbacks:
                callback.on_start(run)
            with torch.autograd.set_detect_anomaly(run.cfg.training.detect_anomaly):
                try:
                    state = _loop(run, stop, callbacks)
                finally:
                    run.stop_requested = stop.requested
            if main:
                run.node.set_status(state=state, stop_reason=run.stop_reason,
                                    best=run.best_info())
            for callback in callbacks:
                callback.last_outputs(run, state)
            for callback in callbacks:
                callback.on_end(run, state)
            return state
    except BaseException as exc:
        if main:
            try:
                run.node.set_status(state="crashed", error=f"{type(exc).__name__}: {exc}")
            except OSError:  # the disk that failed the run may not take the status either
                log.warning("could not record the crash in %s", run.node.path / "status.json")
        raise
    finally:
        if run.step_log is not None:
            run.step_log.close()
        for callback in callbacks:
            callback.close(run)
        if run.lock is not None:
            run.lock.release()
        if main:
            restore_replaced(run.plan)  # a no-op once the new run has a checkpoint


def _raw_scores(run: Run, eval_sets: list[str]) -> dict:
    """validate_ema = 'both': the raw weights' scores as val-raw-* columns (the EMA's are the
    val-* columns that best and early stopping follow)."""
    run.handler.use_weights("raw")
    try:
        result = run.task.evaluate(run.handler, with_outputs=False)
    finally:
        run.handler.use_weights("ema")
    return {raw_column(k): v for k, v in eval_columns(result.means, eval_sets).items()}


def _position(run: Run, epoch: int) -> dict:
    """A step-based run's row says where its validation period ends: optimizer steps and data
    passes (its `epoch` counts periods)."""
    t = run.cfg.training
    if not t.num_iterations:
        return {}
    return {"step": epoch * t.eval_every_n_steps,
            "data-epoch": round(run.loaders.sampler.passes(epoch), 4)}


def _loop(run: Run, stop: StopRequest, callbacks: list[Callback]) -> str:
    cfg, handler, plan, dist = run.cfg, run.handler, run.plan, run.dist
    num_epochs = cfg.training.num_epochs
    eval_sets = list(run.loaders.evals)
    resume = plan.state.get("resume") if plan.state else None
    batch = cfg.data.batch_size  # the global batch: positions in the sampler's order
    run.progress = Progress(num_epochs, plan.start_epoch, batch_size=batch,
                            where=functools.partial(where, cfg.training)) if dist.is_main else None
    with logging_redirect_tqdm(loggers=[logging.getLogger("rumpy")]):
        for epoch in range(plan.start_epoch + 1, num_epochs + 1):
            start = time.perf_counter()
            if resume is not None and plan.state["epoch"] == epoch:
                done, total = resume["position"], resume["loss_sum"].to(handler.device)
                if dist.enabled:  # the saved sum is the ranks' mean: each rank goes on from it
                    total = total.clone()
                rates = resume.get("rates") or {**handler.rates(),
                                                "learning-rate": resume["learning_rate"]}
                elapsed = resume["elapsed"]
                waited_before = resume.get("data_wait", 0.0)
                handler.load_terms_state(resume.get("terms") or {})
                handler.load_grad_state(resume.get("grad"))
                window = resume.get("step_window")
                log.info("resuming epoch %d after step %d", epoch, done)
            else:
                done, total, rates, elapsed, window = 0, None, handler.rates(), 0.0, None
                waited_before = 0.0
            run.loaders.sampler.set_epoch(epoch, start=done * batch)
            full = done + len(run.loaders.train)
            if run.progress is not None:
                run.progress.start_epoch(epoch, done, full)
            steps, total, bad, waited = train_epoch(handler, run.loaders.train, stop, done, total,
                                            run.progress, watch=cfg.training.stop_on_divergence,
                                            dist=dist, full=full, step_log=run.step_log,
                                            epoch=epoch, window=window)
            if dist.enabled:  # the row's loss is the mean over the ranks' shards
                total = dist.sum(total) / dist.world
                if bad is not None:
                    bad = dist.max(bad)
            if bad is not None and int(bad):
                run.flush_checkpoints()
                kept = max(run.node.own_saved(), default=None)
                run.stop_reason = (f"diverged: the training loss was not finite at epoch {epoch}, "
                                   f"batch {int(bad)}; nothing of epoch {epoch} "
                                   f"was saved, the last good checkpoint is "
                                   f"{f'epoch {kept}' if kept else 'none'}. Lower the lr or fork "
                                   f"from it; stop_on_divergence = false trains on")
                return "diverged"
            if stop.requested and steps < full:
                path = run.folder.models / INTERRUPTED
                run.gather_rng()
                if dist.is_main:
                    run.flush_checkpoints()  # epoch k-1's queued jobs would remove this file
                    save_checkpoint(path, run.checkpoint(epoch, resume={
                        "position": steps, "loss_sum": total.cpu(),
                        "learning_rate": rates["learning-rate"], "rates": rates,
                        "elapsed": elapsed + time.perf_counter() - start,
                        "data_wait": waited_before + waited,
                        "terms": handler.terms_state(), "grad": handler.grad_state(),
                        **({"step_window": run.step_log.state()} if run.step_log else {})}))
                    finish_replacement(plan)
                    run.node.set_status(epochs_done=epoch - 1)
                run.stop_reason = (f"stopped (Ctrl+C/SIGTERM) during epoch {epoch} (step {steps}); "
                                   f"saved {path}")
                dist.barrier()  # every rank leaves once the checkpoint is written
                return "interrupted"
            handler.end_epoch()
            row = {"epoch": epoch, **_position(run, epoch),
                   "train-loss": total.item() / max(steps, 1),
                   **handler.term_stats(dist), **rates, **handler.grad_stats()}
            result = None
            if eval_sets and (epoch % cfg.training.eval_frequency == 0 or epoch == num_epochs):
                if stop.requested:  # it came during the epoch's last step: no silent wait
                    log.warning("epoch %d's training is complete: validating it before stopping "
                                "(again to abort: the epoch is then lost and a continue repeats "
                                "it)", epoch)
                result = run.task.evaluate(handler, with_outputs=cfg.training.save_samples)
                row.update(eval_columns(result.means, eval_sets))
                if handler.ema is not None and cfg.training.validate_ema == "both":
                    row.update(_raw_scores(run, eval_sets))
            row["epoch-time"] = elapsed + time.perf_counter() - start
            row["data-wait"] = waited_before + waited
            run.best.update(epoch, row)
            if run.early_stop is not None:
                run.early_stop.update(epoch, row)
            handler.after_validation(row)
            run.gather_rng()
            requests = [callback.on_epoch_end(run, epoch, row, result) for callback in callbacks]
            reason = next((r for r in requests if r), None)  # a callback's stop request
            run.stop_reason = dist.broadcast(reason)  # rank 0's (only rank 0 has callbacks)
            if dist.any(stop.requested, handler.device) and epoch < num_epochs:
                run.stop_reason = f"stopped (Ctrl+C/SIGTERM) after epoch {epoch}"
                dist.barrier()
                return "interrupted"
            if run.stop_reason:
                return "stopped_early"
    return "finished"
