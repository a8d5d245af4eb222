"""Adversarial losses by name (`[model.discriminator] gan_type`), as BasicSR's GANLoss and
ESRGAN's relativistic average GAN. Each gives the discriminator's loss on its predictions for
real and generated images, and the generator's on the generated ones (`ragan` also needs the
real ones, detached: `uses_real`)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..registry import Registry

GAN_LOSSES: Registry = Registry("GAN loss")


def _bce(pred: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    return F.binary_cross_entropy_with_logits(pred, target)


class GANLoss:
    uses_real = False  # the generator's loss needs the discriminator's view of real images

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


@GAN_LOSSES.register("vanilla")
class VanillaGAN(GANLoss):
    """The original GAN's cross-entropy on logits (the generator's non-saturating form)."""

    def discriminator(self, real, fake):
        return _bce(real, True) + _bce(fake, False)

    def generator(self, fake, real=None):
        return _bce(fake, True)


@GAN_LOSSES.register("lsgan")
class LeastSquaresGAN(GANLoss):
    def discriminator(self, real, fake):
        return F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))

    def generator(self, fake, real=None):
        return F.mse_loss(fake, torch.ones_like(fake))


@GAN_LOSSES.register("hinge")
class HingeGAN(GANLoss):
    def discriminator(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def generator(self, fake, real=None):
        return -fake.mean()


@GAN_LOSSES.register("ragan")
class RelativisticAverageGAN(GANLoss):
    """ESRGAN: how much more real a real image looks than the average generated one, and the
    reverse; both halves for either network (BasicSR ESRGANModel)."""

    uses_real = True

    def discriminator(self, real, fake):
        return 0.5 * (_bce(real - fake.mean(), True) + _bce(fake - real.mean(), False))

    def generator(self, fake, real=None):
        return 0.5 * (_bce(real - fake.mean(), False) + _bce(fake - real.mean(), True))
