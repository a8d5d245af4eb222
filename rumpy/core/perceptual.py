"""The perceptual loss (Johnson et al.; ESRGAN's and Real-ESRGAN's configuration): distances
between VGG19 features of the output and the target, at named layers with weights:

    loss = {l1 = 0.01, perceptual = {weight = 1.0, layer_weights = {conv5_4 = 1.0},
                                     vgg_weights_path = "vgg19-dcbb9e9d.pth"}}

ESRGAN uses conv5_4 before the activation with an L1 criterion (BasicSR's train_ESRGAN_x4
yml); Real-ESRGAN weights conv1_2..conv5_4 0.1, 0.1, 1, 1, 1. The ImageNet weights come from
the file the config names (torchvision's vgg19 state dict as downloaded, or its `features.*`
keys alone): nothing is downloaded at run time (docs/config.md, "Perceptual loss")."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# torchvision's vgg19 `features`, layer by layer, in BasicSR's names
_WIDTHS = [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]
NAMES: list[str] = []
for _b, _ws in enumerate(_WIDTHS, start=1):
    for _i in range(1, len(_ws) + 1):
        NAMES += [f"conv{_b}_{_i}", f"relu{_b}_{_i}"]
    NAMES.append(f"pool{_b}")
CRITERIA = ("l1", "l2", "fro")


def vgg19_features(depth: int = len(NAMES)) -> nn.Sequential:
    """The first `depth` layers of VGG19's feature extractor (indices as torchvision's)."""
    layers, in_ch = [], 3
    for widths in _WIDTHS:
        for w in widths:
            layers += [nn.Conv2d(in_ch, w, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = w
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[:depth])


def read_vgg_weights(path: str | Path, depth: int) -> dict:
    """The state dict of the first `depth` feature layers from a torchvision vgg19 file."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    out = {}
    for key, value in state.items():
        key = key[len("features."):] if key.startswith("features.") else key
        index = key.split(".")[0]
        if index.isdigit() and int(index) < depth:
            out[key] = value
    return out


def problems(params: dict) -> list[tuple[str, str]]:
    """The perceptual loss's parameters checked without loading VGG: (key, message)."""
    out = []
    layers = params.get("layer_weights", {"conv5_4": 1.0})
    if not isinstance(layers, dict) or not layers:
        out.append((".layer_weights", "expected a table of VGG19 layer names and weights, e.g. "
                                      "{conv5_4 = 1.0}"))
    else:
        from ..registry import did_you_mean
        for name, weight in layers.items():
            if name not in NAMES:
                out.append((f".layer_weights.{name}", f"not a VGG19 layer{did_you_mean(name, NAMES)} "
                                                      f"(conv1_1 .. conv5_4, relu*, pool*)"))
            elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                out.append((f".layer_weights.{name}", f"expected a weight >= 0, got {weight!r}"))
    path = params.get("vgg_weights_path")
    if not isinstance(path, str) or not path:
        out.append((".vgg_weights_path", "missing: the VGG19 ImageNet weights file (torchvision's "
                                         "vgg19-dcbb9e9d.pth; docs/config.md, Perceptual loss)"))
    elif not Path(path).expanduser().is_file():
        out.append((".vgg_weights_path", f"no such file: {path}"))
    if params.get("criterion", "l1") not in CRITERIA:
        out.append((".criterion", f"expected one of {', '.join(CRITERIA)}, got "
                                  f"{params.get('criterion')!r}"))
    return out


class PerceptualLoss(nn.Module):
    image_loss = True  # checked by `problems`, not by a trial on small tensors (losses.py)

    def __init__(self, vgg_weights_path: str = "", layer_weights: dict | None = None,
                 criterion: str = "l1", use_input_norm: bool = True, range_norm: bool = False):
        super().__init__()
        self.layer_weights = dict(layer_weights or {"conv5_4": 1.0})
        taps = {NAMES.index(n): n for n in self.layer_weights}
        depth = max(taps) + 1
        self.vgg = vgg19_features(depth)
        self.vgg.load_state_dict(read_vgg_weights(Path(vgg_weights_path).expanduser(), depth))
        self.vgg.eval()
        for p in self.vgg.parameters():
            p.requires_grad_(False)
        self.taps = taps
        self.criterion = criterion
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # VGG stays in eval mode whatever the loss is set to
        super().train(mode)
        self.vgg.eval()
        return self

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in self.taps:
                out[self.taps[i]] = x
        return out

    def _distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.criterion == "l1":
            return (a - b).abs().mean()
        if self.criterion == "l2":
            return ((a - b) ** 2).mean()
        return torch.linalg.vector_norm(a - b)  # 'fro', as BasicSR

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.features(x)
        with torch.no_grad():
            fy = self.features(y.detach())
        return sum(w * self._distance(fx[n], fy[n]) for n, w in self.layer_weights.items())
