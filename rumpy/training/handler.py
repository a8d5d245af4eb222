"""NetworkHandler: one model with its optimizer, scheduler, loss and device, and the single
training/inference step. The epoch loop (trainer.py) drives it."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..config import RunConfig
from ..data.images import bicubic, to_float
from ..models import build_model
from .losses import LOSSES
from .optim import build_optimizer, build_scheduler


def select_device(gpu: str, sp_gpu: int) -> torch.device:
    """'off' -> CPU. 'single' -> cuda:<sp_gpu>; without CUDA it is an error, not a silent CPU run
    (a GPU-sized config on a CPU would take days)."""
    if gpu == "off":
        return torch.device("cpu")
    if gpu == "multiple":
        raise ValueError("gpu = 'multiple' (data-parallel training) is not implemented yet; "
                         "use gpu = 'single'")
    if not torch.cuda.is_available():
        raise ValueError("gpu = 'single' but CUDA is not available on this machine; "
                         "use --gpu off to train on the CPU")
    if sp_gpu >= torch.cuda.device_count():
        raise ValueError(f"sp_gpu = {sp_gpu} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(f"cuda:{sp_gpu}")


class NetworkHandler:
    def __init__(self, cfg: RunConfig, steps_per_epoch: int, device: torch.device):
        p = cfg.model.internal_params
        self.device = device
        self.scale = p.scale
        self.model: nn.Module = build_model(cfg.model.name, p.scale, p.arch).to(device)
        self.pre_upsampled = bool(getattr(self.model, "pre_upsampled", False))
        self.optimizer = build_optimizer(p.optimizer, self.model.parameters(), p.lr, p.optimizer_params)
        self._cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.scheduler, self.scheduler_interval = self._build_scheduler()
        self.loss_fn = LOSSES.get(p.loss)().to(device)
        self.grad_clip = p.grad_clip
        self.amp = cfg.training.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0  # optimizer steps taken, over the whole run

    def _build_scheduler(self):
        p = self._cfg.model.internal_params
        return build_scheduler(p.scheduler, self.optimizer, p.scheduler_params,
                               self._cfg.training.num_epochs, self.steps_per_epoch, p.lr)

    def restart_schedule(self, completed_epochs: int) -> None:
        """Rebuild the scheduler from this config's lr and scheduler settings and advance it by
        `completed_epochs` (0 = start the schedule afresh): a branch with a new lr or schedule
        trains with exactly the rate the new settings give at its fork epoch."""
        lr = self._cfg.model.internal_params.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            group["initial_lr"] = lr
        self.scheduler, self.scheduler_interval = self._build_scheduler()
        if self.scheduler is None:
            return
        steps = completed_epochs * (self.steps_per_epoch if self.scheduler_interval == "batch" else 1)
        with warnings.catch_warnings():  # stepping without optimizer steps is the point here
            warnings.simplefilter("ignore")
            for _ in range(steps):
                self.scheduler.step()

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _input(self, lr: torch.Tensor) -> torch.Tensor:
        x = to_float(lr.to(self.device, non_blocking=True))
        if self.pre_upsampled:
            x = bicubic(x, (x.shape[-2] * self.scale, x.shape[-1] * self.scale))
        return x

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a uint8 batch; returns the (detached) loss without syncing."""
        self.model.train()
        x = self._input(lr)
        y = to_float(hr.to(self.device, non_blocking=True))
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.loss_fn(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.amp:
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
        self.step += 1
        if self.scheduler is not None and self.scheduler_interval == "batch":
            self.scheduler.step()
        return loss.detach()

    def end_epoch(self) -> None:
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()

    @torch.no_grad()
    def predict(self, lr: torch.Tensor) -> torch.Tensor:
        """uint8 LR batch -> float SR batch (unclamped)."""
        self.model.eval()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.model(self._input(lr))
        return out.float()

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
