"""Everything that can reject a config, done before the run folder exists: semantic checks
against the registries, the device, the result tree's plan, the task's data, and building the
model, handler and loaders. `start` then makes the first writes."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, RunConfig
from ..config.load import to_toml_dict
from ..data.cache import CacheError, ImageDecodeError
from ..data.limits import LimitedLoader, OneBatch
from ..data.loaders import shard_train_loader
from ..registry import UnknownNameError, did_you_mean
from ..core.columns import STEP_COLUMNS, resolve, summary_columns
from ..core.run_folder import RunFolder
from ..core.summary import SummaryLog
from ..tasks import TASKS, Task
from ..tasks.base import IP
from ..tracking import TRACKERS
from ..tree.lock import NodeLock, NodeLockedError, check_unlocked, file_lock
from ..tree.node import LINEAGE, DamagedNode, Node, write_json
from ..tree.apply import apply_plan, undo_creation
from ..tree.plan import Plan, TreeError, plan_run
from ..utils.folders import folder_problem
from ..core.checkpoint import WEIGHTLESS_PARTS, assemble, rng_state, set_rng_state
from ..core.distributed import SINGLE, Dist
from .dry_run import dry_run, first_batch
from .data_parallel import distribute
from .handler import NetworkHandler, select_device
from .init_weights import load_init_weights
from ..core.losses import check_loss
from ..core.monitor import Monitor, infer_mode
from ..core.optim import (OPTIMIZERS, SCHEDULERS, check_params, optimizer_problem,
                          scheduler_problem, schedules_in_steps)
from .precision import checkpoint_precision, configure_backends, resolve_precision

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One training of one node: what prepare() built, and the loop's state."""

    cfg: RunConfig
    plan: Plan
    device: torch.device
    task: Task
    handler: NetworkHandler
    loaders: object
    columns: list[str]
    best: Monitor                      # best epoch by training.best_load_metric
    early_stop: Monitor | None         # early stopping, when patience > 0
    lock: NodeLock | None = None
    config_table: dict = field(default_factory=dict)
    summary: SummaryLog | None = None
    trackers: list = field(default_factory=list)
    stop_reason: str | None = None     # the loop's: why it stopped (callbacks return requests)
    progress: object = None
    step_log: object = None            # steps.csv (rank 0)
    init_weights: dict | None = None   # where a new run's initial weights came from
    dist: Dist = SINGLE                # data-parallel rank and world size
    rng_ranks: list | None = None      # every rank's RNG state at the epoch's end (data parallel)
    stop_requested: bool = False       # a Ctrl+C/SIGTERM came (also one after the last step)
    saver: object = None               # the background checkpoint writer (CUDA), or None

    def after_checkpoints(self, fn, *args) -> None:
        """`fn(*args)` once the checkpoints saved so far are on disk: now, or queued behind them
        in the background writer."""
        if self.saver is None:
            fn(*args)
        else:
            self.saver.submit(fn, *args)

    def flush_checkpoints(self, raise_errors: bool = True) -> None:
        """Wait for the background checkpoint writes (before reading checkpoints back)."""
        if self.saver is not None:
            self.saver.wait(raise_errors)

    def gather_rng(self) -> None:
        """Every rank's RNG state, for rank 0's checkpoint (a collective: all ranks call it)."""
        if self.dist.enabled:
            self.rng_ranks = self.dist.gather(rng_state())

    @property
    def folder(self) -> RunFolder:
        return self.plan.node.folder

    @property
    def node(self) -> Node:
        return self.plan.node

    def best_info(self) -> dict:
        return {"metric": self.best.column, "value": self.best.best, "epoch": self.best.best_epoch}

    def checkpoint(self, epoch: int, weights_only: bool = False, **extra) -> dict:
        """The node's state after `epoch`, assembled from its named parts; `weights_only`
        leaves out the optimizer, scheduler and scaler (a weights snapshot)."""
        monitors = {"best": self.best.state_dict()}
        if self.early_stop is not None:
            monitors["early_stop"] = self.early_stop.state_dict()
        parts = {**self.handler.parts(), "monitors": monitors, "task": self.task.state_dict()}
        if weights_only:
            parts = {k: v for k, v in parts.items() if k not in WEIGHTLESS_PARTS}
            for name in self.handler.groups:  # another network's weights alone, too
                parts[name] = {"model": parts[name]["model"]}
        if self.node.rel:  # a branch's checkpoints carry its lineage, to recover lineage.json
            extra["lineage"] = self.node.lineage
        if self.rng_ranks is not None:
            extra["rng_ranks"] = self.rng_ranks
        return assemble(epoch, parts, self.config_table, **extra)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lookup(cfg: RunConfig, registry, name: str, key_path: str):
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(cfg.source, key_path, str(exc)) from None


def check_semantics(cfg: RunConfig) -> Task:
    """Checks against the registries (task, model, optimizer, scheduler, loss, metrics,
    trackers); returns the task."""
    src, p = cfg.source, cfg.model.internal_params
    if cfg.training.num_iterations:
        schedules_in_steps(cfg)
    task = TASKS.get(cfg.task)(cfg)
    task.check_config()
    optimizer = _lookup(cfg, OPTIMIZERS, p.optimizer, f"{IP}.optimizer")
    for key, message in check_params(optimizer, p.optimizer_params, exclude=("params", "lr"),
                                     limits=OPTIMIZERS.limits(p.optimizer)):
        raise ConfigError(src, f"{IP}.optimizer_params.{key}", message)
    _at(src, f"{IP}.optimizer_params", optimizer_problem(p.optimizer, p.lr, p.optimizer_params))
    spec = _lookup(cfg, SCHEDULERS, p.scheduler, f"{IP}.scheduler")
    if spec.cls is None and p.scheduler_params:
        raise ConfigError(src, f"{IP}.scheduler_params", "scheduler 'none' takes no parameters")
    if spec.cls is not None:
        own = spec.own + (("interval",) if spec.interval != "plateau" else ())
        for key, message in check_params(spec.cls, p.scheduler_params, exclude=("optimizer",),
                                         own=own, limits=SCHEDULERS.limits(p.scheduler)):
            raise ConfigError(src, f"{IP}.scheduler_params.{key}", message)
        for key in spec.required:
            if key not in p.scheduler_params:
                raise ConfigError(src, f"{IP}.scheduler_params.{key}",
                                  f"missing: scheduler '{p.scheduler}' needs it")
        _at(src, f"{IP}.scheduler_params", scheduler_problem(
            p.scheduler, p.lr, {k: v for k, v in p.scheduler_params.items()
                                if k not in spec.own or k == "interval"},
            cfg.training.num_epochs))
    for key, message in check_loss(p.loss) if p.loss is not None else ():  # None: the model's own
        raise ConfigError(src, f"{IP}.loss{key}", message)
    for name in cfg.training.trackers:
        _lookup(cfg, TRACKERS, name, "training.trackers")
    cfg.training.trackers = list(dict.fromkeys(n.lower() for n in cfg.training.trackers))
    return task


def _at(source: str, table: str, problem: tuple[str, str] | None) -> None:
    if problem is not None:
        key, message = problem
        raise ConfigError(source, f"{table}.{key}" if key else table, message)


@dataclass
class Checked:
    """A config that passed every check that needs no decoding: what `build_run` starts from."""

    cfg: RunConfig
    task: Task
    device: torch.device
    plan: Plan
    dist: Dist


def prepare(cfg: RunConfig, dist: Dist = SINGLE) -> Run:
    """Everything that can reject a config, before anything is written: the checks, then the
    build (data decoded, model, handler, a dry step)."""
    return build_run(check_run(cfg, dist))


def check_run(cfg: RunConfig, dist: Dist = SINGLE) -> Checked:
    """The checks: registries, device, the result tree's plan and the data's layout. Writes
    nothing (but the built-in data sets and caches) and decodes no data."""
    src = cfg.source
    task = check_semantics(cfg)
    task.dist = dist
    try:
        device = select_device(cfg.training.gpu, cfg.training.sp_gpu, dist)
    except ValueError as exc:
        raise ConfigError(src, "training.gpu", str(exc)) from None
    if dist.enabled and cfg.training.overfit:
        raise ConfigError(src, "training.overfit", "a one-process check: run it without torchrun")
    if dist.enabled and cfg.data.batch_size % dist.world:
        raise ConfigError(src, "data.batch_size", f"expected a multiple of the {dist.world} "
                                                  f"processes (the global batch is split evenly), "
                                                  f"got {cfg.data.batch_size}")
    resolve_precision(cfg)  # amp = true and a different precision: refused here
    # Only a disk cache surely writes there; 'auto' may not, and reports a failure when it does.
    problem = folder_problem(Path(cfg.data.cache_dir), try_writing=cfg.data.cache == "disk")
    if problem:
        raise ConfigError(src, "data.cache_dir", problem)
    if not dist.is_main:
        dist.barrier()  # rank 0 builds the built-in sets first
    task.resolve_builtin_sets()
    if dist.is_main:
        dist.barrier()
    try:
        plan = plan_run(cfg)  # fails fast on a clash with the result tree, before decoding data
    except (TreeError, NodeLockedError, DamagedNode) as exc:
        key, _, message = str(exc).partition(": ")
        if "." not in key:
            key, message = "", str(exc)
        raise ConfigError(src, key, message) from None
    task.check_data()
    _check_batch_size(cfg, task.training_samples())
    return Checked(cfg, task, device, plan, dist)


def build_run(checked: Checked) -> Run:
    """The build: the task's data loaded, monitors, the model (init weights), the handler and
    one dry step; still nothing written."""
    cfg, task, device, plan, dist = (checked.cfg, checked.task, checked.device, checked.plan,
                                     checked.dist)
    src = cfg.source
    try:
        loaders = task.setup(device)
    except ImageDecodeError as exc:
        raise ConfigError(src, "data", str(exc)) from None
    except CacheError as exc:
        raise ConfigError(src, "data.cache_dir", str(exc)) from None
    if plan.state is not None:
        task.check_resume(plan.state)
    _development_modes(cfg, task, loaders)
    t = cfg.training
    if t.num_iterations:  # a step-based run: each epoch is a period of the data stream
        try:
            loaders.sampler.stream(t.eval_every_n_steps * t.accumulate_grad_batches,
                                   cfg.data.batch_size)
        except ValueError as exc:
            raise ConfigError(src, "data.batch_size", str(exc)) from None
        _check_stream_position(cfg, plan, loaders.sampler)
    if dist.enabled:
        shard_train_loader(loaders, dist.rank, dist.world, cfg.data.batch_size)
    columns = summary_columns(task.summary_keys(), list(loaders.evals), t.log_grad,
                              task.train_terms(), raw=bool(t.ema_decay) and t.validate_ema == "both")
    if t.num_iterations:
        columns[1:1] = list(STEP_COLUMNS)
    directions = task.column_directions()
    best = _monitor(cfg, "best_load_metric", "auto", 0.0, columns, directions)
    early = None
    if cfg.training.early_stopping_patience:
        early = _monitor(cfg, "early_stopping_metric", cfg.training.early_stopping_mode,
                         cfg.training.early_stopping_min_delta, columns, directions)
    plateau = best.column
    if "monitor" in cfg.model.internal_params.scheduler_params:
        monitor = cfg.model.internal_params.scheduler_params["monitor"]
        plateau = resolve(monitor, columns) if isinstance(monitor, str) else None
        if plateau not in columns:
            raise ConfigError(src, f"{IP}.scheduler_params.monitor",
                              f"expected a summary column, got {monitor!r} (columns: "
                              f"{', '.join(c for c in columns if c.startswith('val-'))})")
    seed_everything(cfg.training.seed)  # right before the weights are drawn
    try:
        model = task.build_model()
    except Exception as exc:  # torch raises ValueError, TypeError or RuntimeError for sizes
        raise ConfigError(src, IP, f"cannot build {cfg.model.name} with these settings: "
                                   f"{_one_line(exc)}") from None
    # Only a new run starts from init weights; a continue or fork has its checkpoint.
    init_info = load_init_weights(cfg, model) if plan.kind == "new" else None
    try:
        # schedulers that step per batch count optimizer steps
        steps = -(-len(loaders.train) // cfg.training.accumulate_grad_batches)
        handler = NetworkHandler(cfg, model, task, steps, device, plateau)
    except ConfigError:  # a task's other network, named at its own key
        raise
    except Exception as exc:
        raise ConfigError(src, IP, f"cannot build {cfg.model.name} with these settings: "
                                   f"{_one_line(exc)}") from None
    at = columns.index("learning-rate") + 1  # each other network's rate beside the model's
    columns[at:at] = [f"learning-rate-{name}" for name in handler.groups]
    if (handler.groups or task.own_training_step()) and \
            cfg.training.accumulate_grad_batches > 1:
        others = f" ({', '.join(handler.groups)} beside the model)" if handler.groups else ""
        raise ConfigError(src, "training.accumulate_grad_batches",
                          f"expected 1 for {cfg.model.name}: its task's training step drives "
                          f"the optimizers itself{others}")
    try:
        dry_run(handler, loaders.train)
    except Exception as exc:  # anything the first step would raise, as one line
        raise ConfigError(src, IP, f"cannot train {cfg.model.name} with these settings "
                                   f"(tried one step and the schedule before writing anything): "
                                   f"{type(exc).__name__}: {_one_line(exc)}") from None
    distribute(cfg, handler, dist, device)
    configure_backends(cfg, device)
    run = Run(cfg, plan, device, task, handler, loaders, columns, best, early,
              config_table=to_toml_dict(cfg), init_weights=init_info, dist=dist)
    _restore_monitors(run)
    if early and early.bad_validations >= cfg.training.early_stopping_patience:
        raise ConfigError(src, "training.early_stopping_patience",
                          f"{plan.node.path} stopped early ({early.bad_validations} validations "
                          f"without improving {early.column}); raise the patience to go on, or "
                          f"fork a branch")
    return run


def _check_stream_position(cfg: RunConfig, plan: Plan, sampler) -> None:
    """A step-based continue or branch starts where its checkpoint left the data stream: the
    data passes made by then must be the ones its row recorded. A changed batch size,
    accumulation or training set would start it elsewhere (repeating or skipping data)."""
    row = next((r for r in plan.rows if r.get("epoch") == plan.start_epoch), None)
    recorded = row.get("data-epoch") if row else None
    if plan.start_epoch == 0 or recorded in (None, ""):
        return
    now = round(sampler.passes(plan.start_epoch), 4)
    if abs(now - float(recorded)) > 1e-4:
        raise ConfigError(cfg.source, "data.batch_size",
                          f"step {plan.start_epoch * cfg.training.eval_every_n_steps} of "
                          f"{plan.node.path} ended {float(recorded):g} data passes in; with this "
                          f"batch size, accumulate_grad_batches and training data it would be "
                          f"{now:g}: a step-based branch keeps them (the data stream would "
                          f"repeat or skip samples)")


def _development_modes(cfg: RunConfig, task: Task, loaders) -> None:
    """limit_train_batches and overfit swap the training loader; overfit also makes the task
    validate on that one batch (limit_eval_batches is applied by the data checks)."""
    t = cfg.training
    if t.overfit:
        batch = first_batch(loaders.train)
        task.overfit(batch)
        loaders.train = OneBatch(loaders.train, batch)
        log.info("overfit: training and validating on one batch of %d samples",
                 len(next(iter(batch.values()))))
    if t.limit_train_batches:
        loaders.train = LimitedLoader(loaders.train, t.limit_train_batches)


def _check_batch_size(cfg: RunConfig, samples: dict[str, int]) -> None:
    """Every batch is whole (an incomplete last batch is dropped, so that each step averages the
    same number of samples): a set smaller than one batch would train on nothing."""
    total = sum(samples.values())
    if cfg.data.batch_size > total and cfg.data.drop_last_training_batch:
        sets = ", ".join(f"{name}: {n}" for name, n in samples.items())
        raise ConfigError(cfg.source, "data.batch_size",
                          f"{cfg.data.batch_size} > {total} training samples per epoch in "
                          f"data.training_sets ({sets}, repeats included); lower batch_size, "
                          f"raise repeat or set drop_last_training_batch = false")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _monitor(cfg: RunConfig, key: str, mode: str, min_delta: float, columns: list[str],
             directions: dict[str, str]) -> Monitor:
    column = resolve(getattr(cfg.training, key), columns)
    watched = [c for c in columns if c.startswith("val-") or c == "train-loss"]
    if key == "best_load_metric" and not any(c.startswith("val-") for c in columns) and \
            column not in columns:
        column = "train-loss"  # no validation set: the best epoch is the lowest training loss
    if column not in watched:
        raise ConfigError(cfg.source, f"training.{key}",
                          f"no validation column {column!r}{did_you_mean(column, watched)} "
                          f"(columns: {', '.join(watched)})")
    try:
        return Monitor(column, infer_mode(column, mode, directions), min_delta)
    except ValueError as exc:
        raise ConfigError(cfg.source, f"training.{key}", str(exc)) from None


def _restore_monitors(run: Run) -> None:
    """Best value and patience counter as they stood at the resume epoch: from the checkpoint
    when it watched the same column, else replayed from the summary rows."""
    saved = (run.plan.state or {}).get("parts", {}).get("monitors", {})
    for name, monitor in (("best", run.best), ("early_stop", run.early_stop)):
        if monitor is None:
            continue
        if saved.get(name, {}).get("column") == monitor.column:
            monitor.load_state_dict(saved[name])
        else:
            monitor.replay(run.plan.rows)
    if run.early_stop is not None and run.plan.kind == "branch" and run.plan.reset_early_stopping:
        run.early_stop.bad_validations = 0


def clean_temporary_files(folder: Path) -> None:
    """Leftovers of atomic writes that a killed process never renamed (`.<name>.<rand>.tmp`)."""
    outputs = folder / "result_outputs"
    subs = [folder, folder / "saved_models", outputs]
    if outputs.is_dir():  # sample folders of each epoch, examples
        subs += sorted(p for p in outputs.iterdir() if p.is_dir() and not p.is_symlink())
    for sub in subs:
        for leftover in sub.glob(".*.tmp"):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
                log.info("removed %s, left by an interrupted write", leftover)


def start(run: Run) -> None:
    """The first writes: the plan's changes to the tree, the node's lock, and the resumed state
    in the handler and the task. Under data parallelism rank 0 writes (after every rank has
    planned) and the others wait for it, then every rank loads the checkpoint."""
    dist = run.dist
    if not dist.enabled:
        _start_writes(run)
        return _restore(run)
    dist.barrier()  # every rank has planned before rank 0 changes the tree
    failure = None
    if dist.is_main:
        try:
            _start_writes(run)
        except BaseException as exc:
            failure = exc
    if dist.broadcast(None if failure is None else str(failure)) is not None:
        if failure is not None:
            raise failure
        raise SystemExit(2)  # rank 0 reports why
    _restore(run)


def _start_writes(run: Run) -> None:
    run.lock = NodeLock(run.node.path)
    root = Path(run.cfg.experiment_save_loc) / run.cfg.experiment
    # Start-ups of one experiment take turns: a concurrent overwrite_data or continue finds the
    # node locked by the first, instead of both acting on a plan made before either started.
    root.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(root.parent / f".{root.name}.start.lock"):
        if run.plan.kind == "continue":  # an existing node: lock it before changing anything
            run.lock.acquire()
            apply_plan(run.plan, run.cfg)
            return _tidy(run)
        if run.plan.remove_root:
            check_unlocked(root)
        try:  # a new run or branch folder comes into being here
            apply_plan(run.plan, run.cfg)
            run.lock.acquire()
            if run.init_weights is not None:
                write_json(run.node.path / LINEAGE, {"init_weights": run.init_weights})
        except NodeLockedError:
            raise  # another process took the folder we made: it is theirs now
        except BaseException:
            undo_creation(run.plan)
            raise
    _tidy(run)


def _tidy(run: Run) -> None:
    clean_temporary_files(run.node.path)
    if run.node.rel and "recovered_from" in run.node.lineage:
        write_json(run.node.path / LINEAGE, run.node.lineage)  # repaired for good


def _restore(run: Run) -> None:
    """The checkpoint's parts into the handler and the task (a continue or a branch)."""
    state, plan, handler = run.plan.state, run.plan, run.handler
    if state is None:
        return
    parts = state["parts"]
    handler.model.load_state_dict(parts["model"])
    run.task.load_state_dict(parts.get("task") or {})
    if plan.load_optimizer:
        handler.optimizer.load_state_dict(parts["optimizer"])
    if plan.load_scheduler:
        if handler.scheduler is not None and parts.get("scheduler") is not None:
            handler.scheduler.load_state_dict(parts["scheduler"])
            for group, lr in zip(handler.optimizer.param_groups, handler.scheduler.get_last_lr()):
                group["lr"] = lr
    else:
        handler.restart_schedule(0 if run.cfg.training.skip_scheduler_load else plan.start_epoch,
                                 plan.rows)
    saved_precision = checkpoint_precision(parts)
    if saved_precision != handler.precision:
        log.info("precision: the checkpoint was trained in %s, this run goes on in %s",
                 saved_precision, handler.precision)
    if parts.get("scaler") and handler.amp:  # a scaler only means something to fp16
        handler.scaler.load_state_dict(parts["scaler"])
    for name, group in handler.groups.items():  # absent in a parent without it: starts fresh
        group.restore(parts.get(name), plan.load_optimizer, plan.load_scheduler,
                      0 if run.cfg.training.skip_scheduler_load else plan.start_epoch)
    if handler.ema is not None:
        if parts.get("ema") is not None:
            handler.ema.load_state_dict(parts["ema"])
        else:  # a fork from a node without EMA weights: the average starts from its weights
            handler.ema.reset(handler.model)
    handler.step = parts["loop"]["step"]
    ranks = state.get("rng_ranks")
    if run.dist.enabled and ranks and len(ranks) == run.dist.world:
        set_rng_state(ranks[run.dist.rank])  # each rank's own stream
    else:
        if run.dist.enabled or ranks:
            log.warning("the checkpoint was written by %d process(es), this run has %d: weights, "
                        "optimizer, schedule and epoch continue; random streams restart from "
                        "rank 0's", len(ranks or [None]), run.dist.world)
        set_rng_state(state["rng"])
    if plan.kind == "continue" and not plan.load_scheduler and handler.scheduler is not None:
        log.warning("num_epochs or the steps an epoch takes changed: the learning-rate "
                    "schedule is rebuilt for %d epochs and "
                    "advanced to epoch %d (lr now %.3g), as a run started with %d epochs would "
                    "have it", run.cfg.training.num_epochs, plan.start_epoch,
                    handler.learning_rate, run.cfg.training.num_epochs)
