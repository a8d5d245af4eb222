"""Optimizers and learning-rate schedulers by name. Each scheduler states whether it steps once
per epoch or once per batch; rumpy fills the arguments it can derive (epochs, steps per epoch)."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.optim import lr_scheduler

from ..limits import FRACTION, NON_NEGATIVE, POSITIVE, check_limits, count, number
from ..registry import Registry, did_you_mean

# Ranges torch leaves unchecked (alpha > 1 trains for a while, then diverges) are declared with
# those it checks, so that every bad value is refused at its own key before anything is written.
_ADAM = {"betas": number(0, below=1, items=2), "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE}
OPTIMIZERS: Registry = Registry("optimizer")
OPTIMIZERS.register("adam", limits=_ADAM)(torch.optim.Adam)
OPTIMIZERS.register("adamw", limits=_ADAM)(torch.optim.AdamW)
OPTIMIZERS.register("sgd", limits={"momentum": NON_NEGATIVE, "dampening": number(0, 1),
                                   "weight_decay": NON_NEGATIVE})(torch.optim.SGD)
OPTIMIZERS.register("rmsprop", limits={"alpha": FRACTION, "eps": NON_NEGATIVE,
                                       "momentum": NON_NEGATIVE,
                                       "weight_decay": NON_NEGATIVE})(torch.optim.RMSprop)


@dataclass(frozen=True)
class SchedulerSpec:
    cls: type | None
    interval: str                      # 'epoch', 'batch', or 'plateau' (after each validation)
    derived: Callable[[int, int, float], dict[str, Any]]   # (epochs, steps/epoch, lr) -> defaults
    required: tuple[str, ...] = ()
    own: tuple[str, ...] = ()          # rumpy's keys, not the class's (consumed by the handler;
                                       # `interval` is every scheduler's)


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")
SCHEDULERS.register("none")(SchedulerSpec(None, "epoch", lambda e, s, lr: {}))
# `interval = "batch"` steps it once per batch (T_0 then counts batches, as in the original tool,
# whose restart_period is translated to it: config/legacy.py).
SCHEDULERS.register("cosine_annealing_warm_restarts", limits={
    "T_0": count(1), "T_mult": count(1), "eta_min": NON_NEGATIVE})(SchedulerSpec(
        lr_scheduler.CosineAnnealingWarmRestarts, "epoch", lambda e, s, lr: {"T_0": e},
        own=("interval",)))
SCHEDULERS.register("cosine", limits={"T_max": count(1), "eta_min": NON_NEGATIVE})(SchedulerSpec(
    lr_scheduler.CosineAnnealingLR, "epoch", lambda e, s, lr: {"T_max": e}))
SCHEDULERS.register("multi_step_lr", limits={
    "milestones": count(1, items=0, increasing=True), "gamma": POSITIVE})(SchedulerSpec(
        lr_scheduler.MultiStepLR, "epoch", lambda e, s, lr: {}, required=("milestones",)))
SCHEDULERS.register("step_lr", limits={"step_size": count(1), "gamma": POSITIVE})(SchedulerSpec(
    lr_scheduler.StepLR, "epoch", lambda e, s, lr: {}, required=("step_size",)))
SCHEDULERS.register("one_cycle_lr", limits={
    "max_lr": POSITIVE, "total_steps": count(1), "epochs": count(1), "steps_per_epoch": count(1),
    "pct_start": number(above=0, below=1), "div_factor": POSITIVE, "final_div_factor": POSITIVE,
    "base_momentum": NON_NEGATIVE, "max_momentum": number("base_momentum")})(SchedulerSpec(
        lr_scheduler.OneCycleLR, "batch", lambda e, s, lr: {"max_lr": lr, "total_steps": e * s}))
# Steps on a summary column after each validation: `monitor` (default: best_load_metric); its
# `mode` defaults to the metric's own direction.
SCHEDULERS.register("reduce_on_plateau", limits={
    "factor": number(above=0, below=1), "patience": count(0), "threshold": NON_NEGATIVE,
    "cooldown": count(0), "min_lr": number(0, or_list=True), "eps": NON_NEGATIVE})(SchedulerSpec(
        lr_scheduler.ReduceLROnPlateau, "plateau", lambda e, s, lr: {}, own=("monitor",)))


def accepted_params(cls: type, exclude: tuple[str, ...]) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters
            if p not in ("self",) + exclude and not p.startswith("_")]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_params(cls: type, params: dict, exclude: tuple[str, ...],
                 own: tuple[str, ...] = (), limits: dict | None = None) -> list[tuple[str, str]]:
    """Unknown names, and numbers that are not finite numbers: every numeric parameter of
    torch's optimizers and schedulers (betas, milestones, gamma, ...) takes numbers, and a list
    of strings would be accepted by torch and silently never match."""
    allowed = accepted_params(cls, exclude) + list(own)
    problems = [(k, f"not a parameter of {cls.__name__}{did_you_mean(k, allowed)} "
                    f"(its parameters: {', '.join(allowed)})")
                for k in params if k not in allowed]
    defaults = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items()}
    for key, value in params.items():
        default = defaults.get(key, inspect.Parameter.empty)
        if isinstance(default, bool) and not isinstance(value, bool):
            # torch reads any non-empty string as true: maximize = "false" would ascend
            problems.append((key, f"expected true or false, got {value!r}"))
        elif isinstance(value, list) and not all(_number(v) for v in value):
            problems.append((key, f"expected a list of finite numbers, got {value!r}"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append((key, f"expected a finite number, got {value!r}"))
    if not problems:
        given = {k: v for k, v in defaults.items() if v is not inspect.Parameter.empty}
        problems = check_limits(limits or {}, params, given)
    return problems


def construction_problem(build: Callable[[dict], Any], params: dict) -> tuple[str, str] | None:
    """(key, message) when `build(params)` raises: the key is the parameter whose removal makes
    it build (torch's message rarely names the argument as the config does), else ''."""
    try:
        build(params)
        return None
    except Exception as exc:  # torch raises ValueError, TypeError, ZeroDivisionError, ...
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    for key in params:
        try:
            build({k: v for k, v in params.items() if k != key})
        except Exception:
            continue
        return key, f"{params[key]!r} is refused: {message}"
    return "", message


def optimizer_problem(name: str, lr: float, params: dict) -> tuple[str, str] | None:
    """Builds the optimizer once on a stand-in parameter."""
    weight = [torch.nn.Parameter(torch.zeros(2))]
    return construction_problem(lambda p: build_optimizer(name, weight, lr, p), params)


def scheduler_problem(name: str, lr: float, params: dict, num_epochs: int) -> tuple[str, str] | None:
    """Builds the scheduler once on a plain SGD (the number of steps per epoch is not known
    yet; the dry run walks the real schedule later)."""
    def build(p: dict):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)
        build_scheduler(name, optimizer, p, num_epochs, 1, lr)
    return construction_problem(build, params)


def build_optimizer(name: str, parameters, lr: float, params: dict) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(parameters, lr=lr, **params)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, params: dict, num_epochs: int,
                    steps_per_epoch: int, lr: float):
    spec = SCHEDULERS.get(name)
    if spec.cls is None:
        return None, spec.interval
    interval = spec.interval
    if "interval" in params:  # counted in epochs or in optimizer steps, as the user states
        if spec.interval == "plateau":
            raise ValueError("interval: reduce_on_plateau steps after each validation")
        interval = {"step": "batch"}.get(params["interval"], params["interval"])
        if interval not in ("epoch", "batch"):
            raise ValueError(f"interval: expected 'epoch' or 'step', got {params['interval']!r}")
    # the lengths rumpy fills in count the chosen interval's steps
    if interval == spec.interval:
        derived = spec.derived(num_epochs, steps_per_epoch, lr)
    elif interval == "batch":  # an epoch scheduler stepped per optimizer step
        derived = spec.derived(num_epochs * steps_per_epoch, 1, lr)
    else:  # a per-step scheduler (one_cycle_lr) stepped per epoch
        derived = spec.derived(num_epochs, 1, lr)
    kwargs = {**derived, **{k: v for k, v in params.items()
                            if k not in spec.own and k != "interval"}}
    missing = [k for k in spec.required if k not in kwargs]
    if missing:
        raise ValueError(f"{name} needs scheduler_params.{missing[0]}")
    return spec.cls(optimizer, **kwargs), interval


@dataclass
class GroupSettings:
    """How a task's extra network is optimised (from its config section)."""

    lr: float
    optimizer: str = "adam"
    optimizer_params: dict | None = None
    scheduler: str = "none"
    scheduler_params: dict | None = None
    grad_clip: float = 0.0
    every: int = 1          # steps every N iterations
    start_step: int = 0     # and only once this many iterations were taken
    trainable: bool = True  # false: frozen (used, never stepped)


def schedules_in_steps(cfg) -> None:
    """A step-based run's schedulers (the model's and a GAN discriminator's) count optimizer
    steps: `interval = "step"` unless given, and "epoch" refused (a plateau scheduler steps
    per validation; 'none' has no interval). Unknown names are left to the registry checks."""
    from ..config import ConfigError

    sections = [("model.internal_params", cfg.model.internal_params)]
    if getattr(cfg.model, "discriminator", None) is not None:  # a GAN's other network
        sections.append(("model.discriminator", cfg.model.discriminator))
    for table, section in sections:
        name = str(section.scheduler or "none").lower()
        spec = SCHEDULERS.get(name) if name in SCHEDULERS else None
        if spec is None or spec.cls is None or spec.interval == "plateau":
            continue
        params = section.scheduler_params if section.scheduler_params is not None else {}
        interval = params.get("interval", "step")
        if interval == "epoch":
            key = f"{table}.scheduler_params.interval"
            raise ConfigError(cfg.origins.get(key, cfg.source), key,
                              "expected 'step': a step-based run's schedule counts optimizer "
                              "steps (milestones, step_size, T_max in steps)")
        section.scheduler_params = {**params, "interval": interval}
