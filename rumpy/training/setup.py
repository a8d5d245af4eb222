"""Everything that can reject a config, done before the run folder exists: semantic checks
against the registries, the device, the data, and building model, handler and loaders."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError, RunConfig
from ..data.build import Loaders, build_loaders, check_data, steps_per_epoch
from ..metrics import METRICS
from ..metrics.lpips import LPIPSWeightsError
from ..models import MODELS, check_model_params
from ..models.registry import model_params
from ..registry import UnknownNameError
from ..results.run_folder import RunFolder
from ..results.summary import summary_columns
from .evaluator import Evaluator
from .handler import NetworkHandler, select_device
from .losses import LOSSES
from .optim import OPTIMIZERS, SCHEDULERS, check_params

log = logging.getLogger(__name__)
IP = "model.internal_params"


@dataclass
class Run:
    cfg: RunConfig
    folder: RunFolder
    device: torch.device
    handler: NetworkHandler
    loaders: Loaders
    evaluator: Evaluator
    metric_names: list[str]
    columns: list[str]


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
    folder = RunFolder.path_for(cfg)
    folder.ensure_absent()  # fail fast, before decoding any data
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
    return Run(cfg, folder, device, handler, loaders, evaluator, metric_names, columns)
