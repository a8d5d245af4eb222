"""Everything that can reject a config, done before the run folder exists: semantic checks
against the registries, the device, the data, and building model, handler and loaders."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError, RunConfig
from ..data.build import (Loaders, build_loaders, check_data, resolve_builtin_sets,
                          steps_per_epoch)
from ..metrics import METRICS
from ..metrics.lpips import LPIPSWeightsError
from ..models import MODELS, check_model_params
from ..models.registry import model_params
from ..registry import UnknownNameError, did_you_mean
from ..results.run_folder import RunFolder
from ..results.summary import summary_columns
from ..tree.lock import NodeLock, NodeLockedError
from ..tree.node import Node
from ..tree.plan import Plan, TreeError, apply_plan, plan_run
from .checkpoint import set_rng_state
from .monitor import Monitor, infer_mode
from .evaluator import Evaluator
from .handler import NetworkHandler, select_device
from .losses import LOSSES
from .optim import OPTIMIZERS, SCHEDULERS, check_params

log = logging.getLogger(__name__)
IP = "model.internal_params"


@dataclass
class Run:
    cfg: RunConfig
    plan: Plan
    device: torch.device
    handler: NetworkHandler
    loaders: Loaders
    evaluator: Evaluator
    metric_names: list[str]
    columns: list[str]
    best: Monitor                      # best epoch by training.best_load_metric
    early_stop: Monitor | None         # early stopping, when patience > 0
    lock: NodeLock | None = None

    @property
    def folder(self) -> RunFolder:
        return self.plan.node.folder

    @property
    def node(self) -> Node:
        return self.plan.node


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lookup(cfg: RunConfig, registry, name: str, key_path: str):
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(cfg.source, key_path, str(exc)) from None


def check_semantics(cfg: RunConfig) -> None:
    src, p = cfg.source, cfg.model.internal_params
    _lookup(cfg, MODELS, cfg.model.name, "model.name")
    for key, message in check_model_params(cfg.model.name, p.scale, p.arch):
        raise ConfigError(src, f"{IP}.{key}", message)
    optimizer = _lookup(cfg, OPTIMIZERS, p.optimizer, f"{IP}.optimizer")
    for key, message in check_params(optimizer, p.optimizer_params, exclude=("params", "lr")):
        raise ConfigError(src, f"{IP}.optimizer_params.{key}", message)
    spec = _lookup(cfg, SCHEDULERS, p.scheduler, f"{IP}.scheduler")
    if spec.cls is None and p.scheduler_params:
        raise ConfigError(src, f"{IP}.scheduler_params", "scheduler 'none' takes no parameters")
    if spec.cls is not None:
        for key, message in check_params(spec.cls, p.scheduler_params, exclude=("optimizer",)):
            raise ConfigError(src, f"{IP}.scheduler_params.{key}", message)
        for key in spec.required:
            if key not in p.scheduler_params:
                raise ConfigError(src, f"{IP}.scheduler_params.{key}",
                                  f"missing: scheduler '{p.scheduler}' needs it")
    _lookup(cfg, LOSSES, p.loss, f"{IP}.loss")
    if not cfg.training.metrics:
        raise ConfigError(src, "training.metrics", "expected at least one of PSNR, SSIM, LPIPS")
    for name in cfg.training.metrics:
        _lookup(cfg, METRICS, name, "training.metrics")
    if len({m.lower() for m in cfg.training.metrics}) != len(cfg.training.metrics):
        raise ConfigError(src, "training.metrics", "a metric is listed twice")
    # The resolved config records every architecture parameter, defaults included.
    defaults = {k: list(d) if isinstance(d, tuple) else d for k, (_, d) in
                model_params(cfg.model.name).items()}
    p.arch = {**defaults, **p.arch}


def prepare(cfg: RunConfig) -> Run:
    src = cfg.source
    check_semantics(cfg)
    try:
        device = select_device(cfg.training.gpu, cfg.training.sp_gpu)
    except ValueError as exc:
        raise ConfigError(src, "training.gpu", str(exc)) from None
    if cfg.training.amp and device.type != "cuda":
        raise ConfigError(src, "training.amp", "mixed precision needs a CUDA device (gpu = 'single')")
    resolve_builtin_sets(cfg)
    try:
        plan = plan_run(cfg)  # fails fast on a clash with the result tree, before decoding data
    except (TreeError, NodeLockedError) as exc:
        key, _, message = str(exc).partition(": ")
        if "." not in key:
            key, message = "", str(exc)
        raise ConfigError(src, key, message) from None
    train_sets, eval_sets = check_data(cfg)
    try:  # LPIPS loads its weights here: missing weights fail before training
        metrics = [METRICS.get(n)(device=device) for n in cfg.training.metrics]
    except LPIPSWeightsError as exc:
        raise ConfigError(src, "training.metrics", str(exc)) from None
    seed_everything(cfg.training.seed)
    try:
        handler = NetworkHandler(cfg, steps_per_epoch(cfg, train_sets), device)
    except (ValueError, TypeError) as exc:
        raise ConfigError(src, IP, f"cannot build {cfg.model.name} with these settings: {exc}") from None
    if cfg.training.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loaders = build_loaders(cfg, train_sets, eval_sets, pin_memory=device.type == "cuda")
    evaluator = Evaluator(metrics, cfg.scale, cfg.training.metric_channel,
                          cfg.training.metric_crop_border, loaders.evals,
                          {n: im.keys for n, im in loaders.eval_sets.items()}, device,
                          cfg.training.num_samples if cfg.training.save_samples else 0)
    metric_names = [m.name for m in metrics]
    columns = summary_columns(metric_names, list(loaders.evals))
    best = _monitor(cfg, "best_load_metric", "auto", 0.0, columns)
    early = None
    if cfg.training.early_stopping_patience:
        early = _monitor(cfg, "early_stopping_metric", cfg.training.early_stopping_mode,
                         cfg.training.early_stopping_min_delta, columns)
    run = Run(cfg, plan, device, handler, loaders, evaluator, metric_names, columns, best, early)
    _restore_monitors(run)
    if early and early.bad_validations >= cfg.training.early_stopping_patience:
        raise ConfigError(src, "training.early_stopping_patience",
                          f"{plan.node.path} stopped early ({early.bad_validations} validations "
                          f"without improving {early.column}); raise the patience to go on, or "
                          f"fork a branch")
    return run


def _monitor(cfg: RunConfig, key: str, mode: str, min_delta: float, columns: list[str]) -> Monitor:
    column = getattr(cfg.training, key)
    if column not in columns and f"val-{column}" in columns:
        column = f"val-{column}"  # 'PSNR' means the first eval set's PSNR
    watched = [c for c in columns if c.startswith("val-") or c == "train-loss"]
    if key == "best_load_metric" and column == "val-PSNR" and column not in columns:
        column = "train-loss"  # no validation set: the best epoch is the lowest training loss
    if column not in watched:
        raise ConfigError(cfg.source, f"training.{key}",
                          f"no validation column {column!r}{did_you_mean(column, watched)} "
                          f"(columns: {', '.join(watched)})")
    try:
        return Monitor(column, infer_mode(column, mode), min_delta)
    except ValueError as exc:
        raise ConfigError(cfg.source, f"training.{key}", str(exc)) from None


def _restore_monitors(run: Run) -> None:
    """Best value and patience counter as they stood at the resume epoch: from the checkpoint
    when it watched the same column, else replayed from the summary rows."""
    saved = (run.plan.state or {}).get("monitors", {})
    for name, monitor in (("best", run.best), ("early_stop", run.early_stop)):
        if monitor is None:
            continue
        if saved.get(name, {}).get("column") == monitor.column:
            monitor.load_state_dict(saved[name])
        else:
            monitor.replay(run.plan.rows)
    if run.early_stop is not None and run.plan.kind == "branch" and run.plan.reset_early_stopping:
        run.early_stop.bad_validations = 0


def start(run: Run) -> None:
    """The first writes: the plan's changes to the tree, the node's lock, and the resumed state
    in the handler."""
    run.lock = NodeLock(run.node.path)
    if run.plan.kind == "continue":  # an existing node: lock it before changing anything
        run.lock.acquire()
        apply_plan(run.plan, run.cfg)
    else:  # a new run or branch folder comes into being here
        apply_plan(run.plan, run.cfg)
        run.lock.acquire()
    state, plan, handler = run.plan.state, run.plan, run.handler
    if state is None:
        return
    handler.model.load_state_dict(state["model"])
    if plan.load_optimizer:
        handler.optimizer.load_state_dict(state["optimizer"])
    if plan.load_scheduler:
        if handler.scheduler is not None and state.get("scheduler") is not None:
            handler.scheduler.load_state_dict(state["scheduler"])
            for group, lr in zip(handler.optimizer.param_groups, handler.scheduler.get_last_lr()):
                group["lr"] = lr
    else:
        handler.restart_schedule(0 if run.cfg.training.skip_scheduler_load else plan.start_epoch)
    if state.get("scaler"):
        handler.scaler.load_state_dict(state["scaler"])
    handler.step = state["step"]
    set_rng_state(state["rng"])
    if plan.kind == "continue" and run.cfg.training.num_epochs != state.get("config", {}).get(
            "training", {}).get("num_epochs") and handler.scheduler is not None:
        log.warning("num_epochs changed: the scheduler keeps the arguments it was built with "
                    "(e.g. T_max) at the run's start")
