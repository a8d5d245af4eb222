"""Adversarial SR for the sisr task (ESRGAN, Real-ESRGAN): a `[model.discriminator]` section
adds a discriminator trained against the SR network. Usually a fork of a PSNR node (the
generator starts from its weights; lineage records the node and epoch) or a new run with
`init_weights_path`. One iteration, as BasicSR's SRGANModel/ESRGANModel.optimize_parameters:

    generator (when due): pixel/perceptual terms + gan_weight * adversarial term, with the
        discriminator frozen; then the EMA update (handler.optimize)
    discriminator (every iteration): its loss on real HR and the detached output

The summary gets train-loss-<term> per loss term (weighted), train-loss-gan and train-loss-d;
train-loss is the generator's total."""
from __future__ import annotations

import torch

from ..config import ConfigError
from ..core.gan_losses import GAN_LOSSES
from ..core.losses import loss_parts, loss_terms
from ..core.optim import GroupSettings
from ..data.images import to_float
from ..models import MODELS, build_model, check_model_params, model_params
from ..models.discriminators import DISCRIMINATOR
from ..registry import did_you_mean

D = "model.discriminator"
NAME = "discriminator"  # the network's name: its checkpoint part and optimisation group


def check_discriminator(cfg) -> None:
    """The section against the registries, as one-line ConfigErrors; records its defaults."""
    d = cfg.model.discriminator
    src = cfg.source
    names = MODELS.names((DISCRIMINATOR,))
    if not d.name or d.name not in MODELS or not MODELS.serves(d.name, (DISCRIMINATOR,)):
        raise ConfigError(src, f"{D}.name", f"expected a discriminator{did_you_mean(d.name, names)}"
                                            f" ({', '.join(names)}), got {d.name!r}")
    from ..config.schema import DiscriminatorConfig
    keys = [k for k in DiscriminatorConfig.__dataclass_fields__ if k != "arch"]
    for key, message in check_model_params(d.name, d.arch, (), (DISCRIMINATOR,)):
        hint = did_you_mean(key, keys)
        raise ConfigError(src, f"{D}.{key}", message + (f" or {hint[2:]}" if hint and
                                                        "not a parameter" in message else ""))
    from ..core.optim import OPTIMIZERS, SCHEDULERS
    if d.optimizer not in OPTIMIZERS:
        raise ConfigError(src, f"{D}.optimizer", f"unknown optimizer {d.optimizer!r}"
                                                 f"{did_you_mean(d.optimizer, OPTIMIZERS.names())}")
    if d.scheduler not in SCHEDULERS:
        raise ConfigError(src, f"{D}.scheduler", f"unknown scheduler {d.scheduler!r}"
                                                 f"{did_you_mean(d.scheduler, SCHEDULERS.names())}")
    if SCHEDULERS.get(d.scheduler).interval == "plateau":
        raise ConfigError(src, f"{D}.scheduler", "reduce_on_plateau is not available for the "
                                                 "discriminator (per-epoch or per-batch ones are)")
    defaults = {k: list(v) if isinstance(v, tuple) else v
                for k, (_, v) in model_params(d.name, (), (DISCRIMINATOR,)).items()}
    d.arch = {**defaults, **d.arch}


class GANStep:
    """The discriminator, its loss and the generator's step for one sisr task."""

    def __init__(self, task):
        self.task = task
        d = task.cfg.model.discriminator
        self.cfg = d
        self.gan = GAN_LOSSES.get(d.gan_type)()
        spec = task.cfg.model.internal_params.loss
        self.pixel_names = [f"loss-{n}" for n, _, _ in loss_terms(spec)]

    def terms(self) -> list[str]:
        return [*self.pixel_names, "loss-gan", "loss-d"]

    def check_data(self) -> None:
        """A discriminator of fixed input size sees the HR crops: they must have that size."""
        d, cfg = self.cfg, self.task.cfg
        size = d.arch.get("input_size")
        if size is None:
            return
        for name, ds in cfg.data.training_sets.items():
            crop = getattr(ds, "crop", None)
            if crop and crop * cfg.scale != size:
                raise ConfigError(cfg.source, f"{D}.input_size",
                                  f"{d.name} sees the HR training crops: expected "
                                  f"{crop * cfg.scale} (data.training_sets.{name}.crop {crop} x "
                                  f"scale {cfg.scale}), got {size}")

    def network(self):
        d = self.cfg
        try:
            module = build_model(d.name, d.arch, (DISCRIMINATOR,))
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ConfigError(self.task.cfg.source, D, f"cannot build {d.name}: "
                                                       f"{' '.join(str(exc).split())[:200]}") from None
        return module, GroupSettings(lr=d.lr, optimizer=d.optimizer,
                                     optimizer_params=d.optimizer_params, scheduler=d.scheduler,
                                     scheduler_params=d.scheduler_params, grad_clip=d.grad_clip,
                                     every=d.generator_every, start_step=d.generator_start_step)

    def __call__(self, handler, batch: dict) -> torch.Tensor:
        task, disc = self.task, handler.groups[NAME]
        d = self.cfg
        lq = task.model_input(batch["lq"])
        extra = task.extra_inputs(batch.get("metadata"))
        gt = to_float(batch["gt"])
        step, d_sees = handler.step, disc.model  # frozen D: the plain module (no DDP hooks)
        g_due = step >= d.generator_start_step and \
            (step - d.generator_start_step) % d.generator_every == 0
        # generator: pixel terms + the adversarial term through the frozen discriminator
        with handler.autocast(), torch.set_grad_enabled(g_due):
            fake = handler.train_model(lq, *extra)
            pixel, parts = loss_parts(task.criterion, self.pixel_names[0][5:], fake, gt)
            disc.requires_grad(False)
            real_pred = d_sees(gt).detach() if self.gan.uses_real else None
            adversarial = self.gan.generator(d_sees(fake), real_pred)
            disc.requires_grad(True)
            loss_g = pixel + d.gan_weight * adversarial
        if g_due:
            handler.optimize(loss_g)
        for name, value in parts.items():
            handler.record(f"loss-{name}", value)
        handler.record("loss-gan", d.gan_weight * adversarial)
        # discriminator: real HR against the (detached) output, every iteration
        with handler.autocast():
            fake = fake.detach()
            loss_d = self.gan.discriminator(disc.train_model(gt), disc.train_model(fake))
        disc.backward_step(loss_d)
        handler.record("loss-d", loss_d)
        return loss_g
