"""Data parallelism's checks and its wrapper: what one process cannot tell the user about
BatchNorm under several processes, and SyncBatchNorm where it cannot run, said before
training starts."""
from __future__ import annotations

import logging

import torch
from torch import nn

from ..config import ConfigError, RunConfig
from ..core.distributed import Dist

log = logging.getLogger(__name__)


def distribute(cfg: RunConfig, handler, dist: Dist, device: torch.device) -> None:
    """Wraps the handler's model for data parallelism (a no-op in one process)."""
    if not dist.enabled:
        return
    batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                     for m in handler.model.modules())
    if cfg.training.sync_bn and device.type != "cuda":
        raise ConfigError(cfg.source, "training.sync_bn",
                          "SyncBatchNorm runs on CUDA GPUs only (nccl), these are CPU processes "
                          "(gloo): set sync_bn = false")
    if batch_norm and not cfg.training.sync_bn:
        log.warning("%s has BatchNorm layers: each of the %d processes normalises its own %d "
                    "samples of a batch, so results differ from one process's (sync_bn = true "
                    "normalises over the whole batch, on CUDA)", cfg.model.name, dist.world,
                    cfg.data.batch_size // dist.world)
    handler.distribute(dist, cfg.training.sync_bn)
