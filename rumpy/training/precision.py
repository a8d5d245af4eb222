"""How the training arithmetic runs: precision (fp32, or bf16/fp16 autocast), TF32, channels-last
memory, torch.compile and the cuDNN switches. One place resolves the config keys into these
settings, so the handler, setup and the benchmarks agree on what a config means."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ConfigError, RunConfig

# precision -> autocast dtype (None: no autocast, plain float32)
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Arithmetic:
    precision: str = "fp32"
    channels_last: bool = False
    compile: str | None = None  # a torch.compile mode, or None (eager)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES[self.precision]

    @property
    def scaled(self) -> bool:
        """fp16 needs a GradScaler (its gradients underflow); bf16 has float32's range."""
        return self.precision == "fp16"


def resolve_precision(cfg: RunConfig) -> str:
    """training.precision, with the older `amp = true` meaning fp16. A ConfigError when both are
    set and disagree."""
    t = cfg.training
    if not t.amp:
        return t.precision
    if t.precision not in ("fp32", "fp16"):
        raise ConfigError(cfg.source, "training.amp",
                          f"amp = true means precision = 'fp16', but precision = "
                          f"{t.precision!r}; remove amp (it is the older spelling)")
    return "fp16"


def arithmetic(cfg: RunConfig) -> Arithmetic:
    t = cfg.training
    mode = "default" if t.compile is True else (t.compile or None)
    return Arithmetic(resolve_precision(cfg), t.channels_last, mode)


def configure_backends(cfg: RunConfig, device: torch.device) -> None:
    """Process-wide switches: deterministic kernels, cuDNN autotuning and TF32. TF32 is set on
    the CPU too (it only affects CUDA), so a run's settings do not depend on the machine that
    prepared it."""
    t = cfg.training
    if t.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = t.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = t.tf32
    torch.backends.cudnn.allow_tf32 = t.tf32


def checkpoint_precision(parts: dict) -> str:
    """The precision a checkpoint was trained in (older checkpoints: from their scaler)."""
    loop = parts.get("loop") or {}
    if "precision" in loop:
        return loop["precision"]
    return "fp16" if parts.get("scaler") else "fp32"
