"""NetworkHandler: optimisation only. The task's output network with its optimizer, scheduler,
precision (autocast and the fp16 GradScaler), memory format, optional torch.compile and gradient
clipping, and the training step; what a batch means (inputs, targets, loss) is the task's
(`task.training_loss`). A task with more networks (a GAN's discriminator) declares them
(`task.extra_networks()`): each becomes an OptimGroup (groups.py) and the task's
`training_step(handler, batch)` drives them all. The EMA copy of the output network (ema.py)
is updated after each of its optimizer steps. The epoch loop (trainer.py) drives the handler."""
from __future__ import annotations

import contextlib
import logging
import math
import warnings

import torch
from torch import nn

from ..config import RunConfig
from ..core.checkpoint import rng_state, set_rng_state
from ..core.columns import direction
from ..core.optim import build_optimizer, build_scheduler
from .ema import EMA, warn_short_average
from .groups import OptimGroup
from .precision import Arithmetic, arithmetic
from .prefetch import Prefetcher, place
from .warmup import Warmup, scaled_lr

log = logging.getLogger(__name__)


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


class NetworkHandler:
    def __init__(self, cfg: RunConfig, model: nn.Module, task, steps_per_epoch: int,
                 device: torch.device, plateau_column: str | None = None,
                 compile_model: bool = True, networks: dict | None = None):
        p = cfg.model.internal_params
        self.device = device
        self.arithmetic: Arithmetic = arithmetic(cfg)
        self.model = model.to(device)
        if self.arithmetic.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.task = task
        self.optimizer = build_optimizer(p.optimizer, self.model.parameters(), p.lr, p.optimizer_params)
        self._cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        # reduce_on_plateau watches a summary column, in its metric's direction
        self.plateau_column = plateau_column
        self.scheduler, self.scheduler_interval = self._build_scheduler()
        self.grad_clip = p.grad_clip
        self.autocast_dtype = self.arithmetic.autocast_dtype
        self.amp = self.arithmetic.scaled  # fp16: the loss is scaled against underflow
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.step = 0  # optimizer steps taken, over the whole run
        # DistributedDataParallel(model) under data parallelism, torch.compile's wrapper when
        # compiling; `model` stays the plain module (checkpoints, evaluation, export)
        self.train_model = self.model
        self.compiled = False
        self._compile_tried = self._stepped = False
        if compile_model and self.arithmetic.compile:
            self.compile()
        self.log_grad = cfg.training.log_grad
        # k micro-batches per optimizer step: their losses are averaged (each divided by the
        # cycle's length) and, under DDP, only the last one's backward all-reduces
        self.accumulate = cfg.training.accumulate_grad_batches
        self._micro = self._cycle = 0  # micro-batches done in this cycle, and its length
        self.warmup = Warmup(cfg.training.warmup_steps, cfg.training.warmup)
        self._grad_sum = self._grad_max = None  # this epoch's gradient norms, on the device
        # The task's other networks, each with its own optimisation (in the task's order)
        networks = task.extra_networks() if networks is None else networks
        self.groups: dict[str, OptimGroup] = {
            name: OptimGroup(name, module, settings, cfg.training.num_epochs, steps_per_epoch,
                             device, self.amp, self.arithmetic.channels_last)
            for name, (module, settings) in networks.items()}
        t = cfg.training
        self.ema = EMA(self.model, t.ema_decay, t.ema_start_step) if t.ema_decay else None
        if self.ema is not None:
            warn_short_average(t, steps_per_epoch // max(1, self.accumulate))
        # what validation scores: 'ema' (also under 'both': the raw scores are extra columns)
        self.validate = "raw" if self.ema is None or t.validate_ema == "raw" else "ema"
        self._terms: dict[str, list] = {}  # loss terms of this epoch: name -> [sum, count]
        self.train_terms = list(task.train_terms())
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # the latest step's (warmed) rate
        if compile_model and self.arithmetic.compile:
            for group in self.groups.values():
                group.train_model = torch.compile(group.train_model, mode=self.arithmetic.compile)

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
        """The rate the next optimizer step uses (the schedule's, times the warmup's factor)."""
        return self.optimizer.param_groups[0]["lr"] * self.warmup.factor(self.step + 1)

    def rates(self) -> dict[str, float]:
        """The summary's learning-rate columns: the model's, and each other network's."""
        factor = self.warmup.factor(self.step + 1)
        return {"learning-rate": self.learning_rate,
                **{f"learning-rate-{name}": g.optimizer.param_groups[0]["lr"] * factor
                   for name, g in self.groups.items()}}

    @property
    def accumulating(self) -> bool:
        """Inside an accumulation cycle: gradients of some micro-batches wait for their step."""
        return self._micro > 0

    @property
    def precision(self) -> str:
        return self.arithmetic.precision

    def compile(self) -> None:
        """torch.compile the training model (lazily: the first step compiles). The wrapper
        shares the module's parameters, and `model` stays plain, so state dicts keep their
        names (no `_orig_mod.` prefix)."""
        self.train_model = torch.compile(self.train_model, mode=self.arithmetic.compile)
        self.compiled = True

    def uncompile(self) -> None:
        self.train_model = getattr(self.train_model, "_orig_mod", self.train_model)
        for group in getattr(self, "groups", {}).values():
            group.train_model = getattr(group.train_model, "_orig_mod", group.train_model)
        self.compiled = False

    def feed(self, loader):
        """The training batches, on the device: on CUDA each copy overlaps the previous step."""
        return Prefetcher(loader, self.device, self.arithmetic.channels_last)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def train_step(self, batch: dict, remaining: int = 1) -> torch.Tensor:
        """One batch: with accumulate_grad_batches = k, one micro-batch of an optimizer step
        (`remaining`: the epoch's batches left, this one included, so that the epoch's last
        cycle averages over the micro-batches it has). Returns the (detached) loss without
        syncing."""
        if self._micro == 0:
            self._cycle = max(1, min(self.accumulate, remaining))
        if self.compiled and not self._compile_tried:
            return self._first_compiled_step(batch)
        return self._step(batch)

    def _first_compiled_step(self, batch: dict) -> torch.Tensor:
        """The first compiled step compiles. A model the compiler cannot take (an unsupported
        op, no C++ compiler) trains eagerly after one warning: the failure comes before the
        optimizer step, so the step is redone from the same weights and random state."""
        saved, cycle = rng_state(), (self._micro, self._cycle)
        self._compile_tried = True
        try:
            return self._step(batch)
        except Exception as exc:
            if self._stepped:
                raise
            log.warning("torch.compile failed (%s: %s); training eagerly", type(exc).__name__,
                        " ".join(str(exc).split())[:200])
            self.uncompile()
            set_rng_state(saved)
            self._micro, self._cycle = cycle  # the failed micro-batch is done again
            return self._step(batch)

    def _step(self, batch: dict) -> torch.Tensor:
        self._stepped = False
        self.model.train()
        batch = place(batch, self.device, self.arithmetic.channels_last)
        if self.groups or self.task.own_training_step():  # the task drives the iteration
            factor = self.warmup.factor(self.step + 1)
            for group in self.groups.values():
                group.model.train()
                group.lr_factor = factor
            loss = self.task.training_step(self, batch)
            self._stepped = True
            self.step += 1
            return loss.detach().float()
        # DDP all-reduces in the backward of a forward made outside no_sync: the cycle's last
        with self._autocast(), self._sync(self._micro + 1 == self._cycle):
            loss = self.task.training_loss(self.train_model, batch)
        self.optimize(loss)
        if self._micro == 0:
            self.step += 1
        return loss.detach().float()

    def _sync(self, sync: bool):
        if sync or not hasattr(self.train_model, "no_sync"):
            return contextlib.nullcontext()
        return self.train_model.no_sync()

    def autocast(self):
        """The training precision's autocast context (for a task's training_step)."""
        return self._autocast()

    def optimize(self, loss: torch.Tensor) -> None:
        """The output network's backward on `loss` (already computed) and, at the end of an
        accumulation cycle, its optimizer step, per-batch scheduler step and EMA update."""
        if self._micro == 0:
            self.optimizer.zero_grad(set_to_none=True)
            self._cycle = self._cycle or 1
        self._micro += 1
        if self._cycle > 1:
            loss = loss / self._cycle
        if self.amp:
            self.scaler.scale(loss.float()).backward()
        else:
            loss.backward()
        if self._micro < self._cycle:
            return
        self._micro = self._cycle = 0
        factor = self.warmup.factor(self.step + 1)
        self.last_lr = self.optimizer.param_groups[0]["lr"] * factor
        if self.amp:
            if self.grad_clip or self.log_grad:
                self.scaler.unscale_(self.optimizer)
                self._gradients()
            self._stepped = True
            with scaled_lr(self.optimizer, factor):
                self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._gradients()
            self._stepped = True
            with scaled_lr(self.optimizer, factor):
                self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "batch":
            self.scheduler.step()
        if self.ema is not None:  # the step this update follows: step + 1 (1-based)
            self.ema.update(self.model, self.step + 1)

    def record(self, name: str, value: torch.Tensor) -> None:
        """A loss term of this step (detached, on the device: no sync), for the epoch's
        train-<name> column."""
        entry = self._terms.setdefault(name, [torch.zeros((), dtype=torch.float64,
                                                          device=self.device), 0])
        entry[0] += value.detach().double()
        entry[1] += 1

    def terms_state(self) -> dict:
        """The epoch's loss-term sums so far (kept in a mid-epoch checkpoint)."""
        return {k: [v[0].cpu(), v[1]] for k, v in self._terms.items()}

    def load_terms_state(self, state: dict) -> None:
        self._terms = {k: [v[0].to(self.device), int(v[1])] for k, v in state.items()}

    def term_stats(self, dist=None) -> dict[str, float]:
        """The epoch's loss-term columns (train-<name>: the mean over the steps that had it),
        then reset."""
        out = {}
        for name, (total, count) in self._terms.items():
            if dist is not None and dist.enabled:
                total = dist.sum(total) / dist.world
            out[f"train-{name}"] = float(total) / max(count, 1)
        self._terms = {}
        return out

    def distribute(self, dist, sync_bn: bool = False) -> None:
        """Data parallel: gradients are averaged over the ranks in backward (DDP). Checkpoints,
        evaluation and export keep using `model`, the module itself."""
        if not dist.enabled:
            return
        if sync_bn:  # the converted layers keep the same Parameter objects (the optimizer's)
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        ids = [dist.local_rank] if self.device.type == "cuda" else None
        self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if self.compiled:  # compile the DDP wrapper (DDP's graph breaks at its buckets)
            self.compile()
        for group in self.groups.values():
            if group.settings.trainable:
                if sync_bn:
                    group.model = nn.SyncBatchNorm.convert_sync_batchnorm(group.model)
                group.train_model = nn.parallel.DistributedDataParallel(group.model,
                                                                        device_ids=ids)

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

    def grad_state(self) -> dict | None:
        """This epoch's gradient-norm statistics so far (kept in a mid-epoch checkpoint)."""
        if self._grad_sum is None:
            return None
        return {"sum": float(self._grad_sum), "max": float(self._grad_max),
                "steps": self._grad_steps}

    def load_grad_state(self, state: dict | None) -> None:
        if not state:
            return
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float64, device=self.device)  # noqa: E731
        self._grad_sum, self._grad_max = as_tensor(state["sum"]), as_tensor(state["max"])
        self._grad_steps = int(state["steps"])

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
        for group in self.groups.values():
            group.end_epoch()

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
        in eval mode (unclamped). In float32 whatever the training precision: a bf16 output
        carries 8 bits of mantissa, about one 8-bit level near white, which would cost PSNR
        that the weights do not deserve."""
        model = self.eval_model
        model.eval()
        if self.arithmetic.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        out = model(inputs, *extra)
        return out.float()

    @property
    def eval_model(self) -> nn.Module:
        """The weights validation scores: the EMA copy unless training.validate_ema = 'raw'."""
        return self.ema.model if self.validate == "ema" else self.model

    def use_weights(self, which: str) -> None:
        """Validate the 'ema' or the 'raw' weights from now on (validate_ema = 'both')."""
        self.validate = which if self.ema is not None else "raw"

    def parts(self) -> dict:
        """The named stateful parts this handler contributes to a checkpoint: the output
        network's (model, optimizer, scheduler, scaler), each other network's as one part named
        after it, and the EMA weights as `ema`."""
        parts = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "loop": {"step": self.step, "precision": self.precision},
        }
        for name, group in self.groups.items():
            parts[name] = group.part()
        if self.ema is not None:
            parts["ema"] = self.ema.state_dict()
        return parts

