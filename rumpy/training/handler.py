"""NetworkHandler: optimisation only. One model with its optimizer, scheduler, AMP scaler and
gradient clipping, and the single training step; what a batch means (inputs, targets, loss) is
the task's (`task.training_loss`). The epoch loop (trainer.py) drives it."""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..config import RunConfig
from ..core.columns import direction
from ..core.optim import build_optimizer, build_scheduler


def select_device(gpu: str, sp_gpu: int, dist=None) -> torch.device:
    """'off' -> CPU. 'single' -> cuda:<sp_gpu>; without CUDA it is an error, not a silent CPU run
    (a GPU-sized config on a CPU would take days). A data-parallel rank uses its local GPU."""
    if gpu == "off":
        return torch.device("cpu")
    if dist is not None and dist.enabled:
        if not torch.cuda.is_available():
            raise ValueError(f"gpu = {gpu!r} but CUDA is not available on this machine; use "
                             f"--gpu off for CPU processes (gloo)")
        return torch.device(f"cuda:{dist.local_rank}")
    if gpu == "multiple":
        raise ValueError("gpu = 'multiple' runs under torchrun or relaunches itself through it "
                         "(train_sisr does this); one process cannot use several GPUs")
    if not torch.cuda.is_available():
        raise ValueError("gpu = 'single' but CUDA is not available on this machine; "
                         "use --gpu off to train on the CPU")
    if sp_gpu >= torch.cuda.device_count():
        raise ValueError(f"sp_gpu = {sp_gpu} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(f"cuda:{sp_gpu}")


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


class NetworkHandler:
    def __init__(self, cfg: RunConfig, model: nn.Module, task, steps_per_epoch: int,
                 device: torch.device, plateau_column: str | None = None):
        p = cfg.model.internal_params
        self.device = device
        self.model = model.to(device)
        self.task = task
        self.optimizer = build_optimizer(p.optimizer, self.model.parameters(), p.lr, p.optimizer_params)
        self._cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        # reduce_on_plateau watches a summary column, in its metric's direction
        self.plateau_column = plateau_column
        self.scheduler, self.scheduler_interval = self._build_scheduler()
        self.grad_clip = p.grad_clip
        self.amp = cfg.training.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0  # optimizer steps taken, over the whole run
        self.train_model = self.model  # DistributedDataParallel(model) under data parallelism
        self.log_grad = cfg.training.log_grad
        self._grad_sum = self._grad_max = None  # this epoch's gradient norms, on the device

    def _build_scheduler(self):
        p = self._cfg.model.internal_params
        params = dict(p.scheduler_params)
        if p.scheduler == "reduce_on_plateau" and "mode" not in params:
            params["mode"] = direction(self.plateau_column or "",
                                       self.task.column_directions()) or "min"
        return build_scheduler(p.scheduler, self.optimizer, params, self._cfg.training.num_epochs,
                               self.steps_per_epoch, p.lr)

    def restart_schedule(self, completed_epochs: int, rows: list[dict] = ()) -> None:
        """Rebuild the scheduler from this config's lr and scheduler settings and advance it by
        `completed_epochs` (0 = start the schedule afresh): a branch with a new lr or schedule
        trains with exactly the rate the new settings give at its fork epoch. A plateau
        scheduler is advanced over the inherited rows' values of its column."""
        lr = self._cfg.model.internal_params.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            group["initial_lr"] = lr
        self.scheduler, self.scheduler_interval = self._build_scheduler()
        if self.scheduler is None:
            return
        if self.scheduler_interval == "plateau":
            for row in rows[:completed_epochs]:
                self.after_validation(row)
            return
        steps = completed_epochs * (self.steps_per_epoch if self.scheduler_interval == "batch" else 1)
        with warnings.catch_warnings():  # stepping without optimizer steps is the point here
            warnings.simplefilter("ignore")
            for _ in range(steps):
                self.scheduler.step()

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, batch: dict) -> torch.Tensor:
        """One optimizer step on a batch; returns the (detached) loss without syncing."""
        self.model.train()
        batch = to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.task.training_loss(self.train_model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.amp:
            self.scaler.scale(loss).backward()
            if self.grad_clip or self.log_grad:
                self.scaler.unscale_(self.optimizer)
                self._gradients()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self._gradients()
            self.optimizer.step()
        self.step += 1
        if self.scheduler is not None and self.scheduler_interval == "batch":
            self.scheduler.step()
        return loss.detach()

    def distribute(self, dist, sync_bn: bool = False) -> None:
        """Data parallel: gradients are averaged over the ranks in backward (DDP). Checkpoints,
        evaluation and export keep using `model`, the module itself."""
        if not dist.enabled:
            return
        if sync_bn:  # the converted layers keep the same Parameter objects (the optimizer's)
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        ids = [dist.local_rank] if self.device.type == "cuda" else None
        self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _gradients(self) -> None:
        """Clipping and the norm's statistics; the norm stays on the device (no sync)."""
        if self.grad_clip:
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        elif self.log_grad:
            norm = nn.utils.get_total_norm([p.grad for p in self.model.parameters()
                                            if p.grad is not None])
        else:
            return
        if self.log_grad:
            norm = norm.detach().double()
            if self._grad_sum is None:
                self._grad_sum, self._grad_max, self._grad_steps = norm.clone(), norm.clone(), 0
            else:
                self._grad_sum += norm
                self._grad_max = torch.maximum(self._grad_max, norm)
            self._grad_steps += 1

    def grad_stats(self) -> dict[str, float]:
        """The epoch's gradient-norm columns (then reset); empty unless log_grad."""
        if not self.log_grad or self._grad_sum is None:
            return {}
        out = {"grad-norm-mean": float(self._grad_sum) / self._grad_steps,
               "grad-norm-max": float(self._grad_max)}
        self._grad_sum = self._grad_max = None
        return out

    def end_epoch(self) -> None:
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()

    def after_validation(self, row: dict) -> None:
        """reduce_on_plateau steps on its column's value (epochs without one change nothing)."""
        if self.scheduler is None or self.scheduler_interval != "plateau":
            return
        value = row.get(self.plateau_column)
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.scheduler.step(value)

    @torch.no_grad()
    def infer(self, inputs: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """The model's float output for prepared inputs (and a conditioned model's metadata),
        in eval mode (unclamped)."""
        self.model.eval()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.model(inputs, *extra)
        return out.float()

    def parts(self) -> dict:
        """The named stateful parts this handler contributes to a checkpoint."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "loop": {"step": self.step},
        }
