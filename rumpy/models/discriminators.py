"""Discriminators of adversarial SR, written after BasicSR's (parameter names as theirs, so
published discriminator weights load): ESRGAN's VGG-style classifier and Real-ESRGAN's U-Net
with spectral normalisation (a realness value per pixel). They serve the pseudo-task
'discriminator': `[model.discriminator] name = ...`, never `model.name`."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from ..limits import count
from .registry import MODELS

DISCRIMINATOR = "discriminator"  # the registry scope of these networks


@MODELS.register("vgg_discriminator", tasks=(DISCRIMINATOR,),
                 limits={"num_in_ch": count(1), "num_feat": count(1)})
class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's discriminator (BasicSR VGGStyleDiscriminator): ten conv+BN blocks halving the
    size five times (six for 256), then two linear layers to one logit per image. It sees
    patches of exactly `input_size` pixels (the HR crop: data's patch size times the scale)."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128):
        super().__init__()
        if input_size < 32 or input_size % 32:
            raise ValueError(f"input_size: expected a multiple of 32 (128 or 256 as ESRGAN), "
                             f"got {input_size}")
        self.input_size = input_size
        nf = num_feat
        self.conv0_0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(nf, affine=True)
        widths = [(nf, nf * 2), (nf * 2, nf * 4), (nf * 4, nf * 8), (nf * 8, nf * 8)]
        for i, (a, b) in enumerate(widths, start=1):
            setattr(self, f"conv{i}_0", nn.Conv2d(a, b, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(b, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(b, b, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(b, affine=True))
        self.stages = 5
        if input_size == 256:  # BasicSR's 256 variant: one more halving stage
            self.conv5_0 = nn.Conv2d(nf * 8, nf * 8, 3, 1, 1, bias=False)
            self.bn5_0 = nn.BatchNorm2d(nf * 8, affine=True)
            self.conv5_1 = nn.Conv2d(nf * 8, nf * 8, 4, 2, 1, bias=False)
            self.bn5_1 = nn.BatchNorm2d(nf * 8, affine=True)
            self.stages = 6
        side = input_size >> self.stages
        self.linear1 = nn.Linear(nf * 8 * side * side, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(2) != self.input_size or x.size(3) != self.input_size:
            raise ValueError(f"vgg_discriminator takes {self.input_size}x{self.input_size} "
                             f"patches (input_size), got {tuple(x.shape[2:])}")
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, self.stages):
            feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)


@MODELS.register("unet_discriminator", tasks=(DISCRIMINATOR,),
                 limits={"num_in_ch": count(1), "num_feat": count(1)})
class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's discriminator (BasicSR UNetDiscriminatorSN): a U-Net of spectrally
    normalised convolutions giving a realness logit per pixel. Inputs: sides divisible by 8."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        self.skip_connection = skip_connection
        nf, norm = num_feat, spectral_norm
        self.conv0 = nn.Conv2d(num_in_ch, nf, kernel_size=3, stride=1, padding=1)
        self.conv1 = norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(2) % 8 or x.size(3) % 8:
            raise ValueError(f"unet_discriminator takes sides divisible by 8, got "
                             f"{tuple(x.shape[2:])}")
        act = lambda t: F.leaky_relu(t, negative_slope=0.2, inplace=True)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear",  # noqa: E731
                                     align_corners=False)
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)
