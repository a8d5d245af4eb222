"""An optimisation group: one trainable network of a task beside its output network (a GAN's
discriminator), with its own optimizer, scheduler, fp16 GradScaler, gradient clipping and
update frequency. The task's `training_step` drives it through `backward_step`; the handler
saves it as one checkpoint part named after the network (docs/design.md, "Add a network to a
task")."""
from __future__ import annotations

import warnings
import torch
from torch import nn

from ..core.optim import GroupSettings, build_optimizer, build_scheduler
from .warmup import scaled_lr


class OptimGroup:
    def __init__(self, name: str, model: nn.Module, settings: GroupSettings, num_epochs: int,
                 steps_per_epoch: int, device: torch.device, scaled: bool,
                 channels_last: bool = False):
        self.name = name
        self.settings = settings
        self.model = model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_model = self.model  # DDP / torch.compile wrapper when set
        self._num_epochs, self._steps_per_epoch = num_epochs, steps_per_epoch
        params = [p for p in self.model.parameters()]
        if not settings.trainable:
            for p in params:
                p.requires_grad_(False)
        self.optimizer = build_optimizer(settings.optimizer, params, settings.lr,
                                         dict(settings.optimizer_params or {}))
        self.scheduler, self.scheduler_interval = self._build_scheduler()
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaled)
        self.amp = scaled
        self.lr_factor = 1.0  # training.warmup's, set by the handler before each step

    def _build_scheduler(self):
        s = self.settings
        return build_scheduler(s.scheduler, self.optimizer, dict(s.scheduler_params or {}),
                               self._num_epochs, self._steps_per_epoch, s.lr)

    def due(self, step: int) -> bool:
        """Whether this network steps at iteration `step` (0-based, the handler's count)."""
        s = self.settings
        return s.trainable and step >= s.start_step and (step - s.start_step) % s.every == 0

    def requires_grad(self, flag: bool) -> None:
        """Freeze while another network's loss flows through this one (BasicSR's G step)."""
        if self.settings.trainable:
            for p in self.model.parameters():
                p.requires_grad_(flag)

    def backward_step(self, loss: torch.Tensor) -> None:
        """zero_grad, backward (scaled under fp16), clip, step, and a per-batch scheduler."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.amp:
            self.scaler.scale(loss.float()).backward()
            if self.settings.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
            with scaled_lr(self.optimizer, self.lr_factor):
                self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.settings.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
            with scaled_lr(self.optimizer, self.lr_factor):
                self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "batch":
            self.scheduler.step()

    def end_epoch(self) -> None:
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()

    def part(self) -> dict:
        """The checkpoint part: weights, optimizer, scheduler and scaler."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict()}

    def restore(self, part: dict | None, load_optimizer: bool, load_scheduler: bool,
                completed_epochs: int) -> None:
        """A continue or fork: the saved part (absent when the parent had no such network: it
        starts fresh, its schedule advanced to the fork epoch)."""
        if part is None:
            self.restart_schedule(completed_epochs)
            return
        self.model.load_state_dict(part["model"])
        if load_optimizer and part.get("optimizer") is not None:
            self.optimizer.load_state_dict(part["optimizer"])
        if load_scheduler and self.scheduler is not None and part.get("scheduler") is not None:
            self.scheduler.load_state_dict(part["scheduler"])
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr
        else:
            self.restart_schedule(completed_epochs)
        if self.amp and part.get("scaler"):
            self.scaler.load_state_dict(part["scaler"])

    def restart_schedule(self, completed_epochs: int) -> None:
        """The configured lr and schedule, advanced by `completed_epochs`."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.settings.lr
        self.scheduler, self.scheduler_interval = self._build_scheduler()
        if self.scheduler is None:
            return
        steps = completed_epochs * (self._steps_per_epoch if self.scheduler_interval == "batch"
                                    else 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(steps):
                self.scheduler.step()
