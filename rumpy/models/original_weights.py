"""The original tool's (RUMpy's) weights for the meta-attention models, under its names.

RUMpy saved `{"network": state_dict, "model_name": ..., "model_epoch": ..., optimizer, ...}`;
its q-models name their modules differently from rumpy's (`body.0.body.1.q_node.
attribute_integrator.0.weight` for `groups.0.blocks.1.attention.fc.0.weight`) and build meta-
attention from 1x1 convolutions where rumpy has linear layers. A model that can take them
declares `original_layout()`: regex rules from each of its keys to the original's (the first
that matches), the original's keys its forward never reads, tensors laid out differently, and
the settings under which its network computes what the original's did. `training.
init_weights_path` uses it (training/init_weights.py); rumpy's own checkpoints are untouched."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

Convert = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class OriginalLayout:
    names: tuple[str, ...]                       # the original's model_name values
    rules: list[tuple[str, str]]                 # (regex on rumpy's key, the original's key)
    unused: tuple[str, ...] = ()                 # regexes: the original's keys never read
    # rumpy key -> (original tensor -> rumpy's, rumpy's shape -> the original's)
    special: dict[str, tuple[Convert, Callable[[tuple], tuple]]] = field(default_factory=dict)
    # settings (model.internal_params) -> the value the original's network needs
    settings: dict[str, object] = field(default_factory=dict)


def meta_attention_rules(rumpy: str, original: str) -> list[tuple[str, str]]:
    """rumpy's `<rumpy>.fc.N` (linear layers) is the original's `<original>.
    attribute_integrator.N` (1x1 convolutions, the same indices with or without the ReLU)."""
    return [(rf"^{rumpy}\.fc\.(?P<fc>\d+)\.(?P<kind>weight|bias)$",
             rf"{original}.attribute_integrator.\g<fc>.\g<kind>")]


def _rename(layout: OriginalLayout, key: str) -> str:
    for pattern, replacement in layout.rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return key


def _expected(layout: OriginalLayout, own: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """rumpy key -> (the original's key, its shape there)."""
    out = {}
    for key, tensor in own.items():
        name, shape = _rename(layout, key), tuple(tensor.shape)
        if key in layout.special:
            shape = layout.special[key][1](shape)
        elif ".attribute_integrator." in name and name.endswith(".weight"):
            shape = shape + (1, 1)  # a 1x1 convolution's weight
        out[key] = (name, shape)
    return out


def _unused(layout: OriginalLayout, key: str) -> bool:
    return any(re.match(p, key) for p in layout.unused)


def looks_original(model: nn.Module, weights: dict) -> bool:
    """More of `weights` named as the original's layout of `model` than as rumpy's own."""
    layout = model.original_layout()
    own = model.state_dict()
    if set(weights) == set(own):
        return False
    theirs = {name for name, _ in _expected(layout, own).values()}
    original = sum(1 for k in weights if k in theirs or _unused(layout, k))
    return original > sum(1 for k in weights if k in own)


def _nonlinearity(weights: dict) -> bool | None:
    """Whether the original's meta-attention had a ReLU (its second layer at index 2) and
    how many layers it had, from the first meta-attention layer's keys."""
    indices: dict[str, set[int]] = {}
    for key in weights:
        found = re.match(r"^(.*\.attribute_integrator)\.(\d+)\.weight$", key)
        if found:
            indices.setdefault(found.group(1), set()).add(int(found.group(2)))
    if not indices:
        return None
    first = sorted(indices[min(indices)])
    return first == [0, 2] if len(first) == 2 else first


def settings_needed(model: nn.Module, weights: dict) -> list[str]:
    """The `key = value` settings the model needs to compute what the original did with these
    weights (empty when it has them)."""
    need = dict(model.original_layout().settings)
    relu = _nonlinearity(weights)
    if isinstance(relu, bool) and hasattr(model, "q_layer_nonlinearity"):
        need["q_layer_nonlinearity"] = relu
    # the models keep these settings as attributes of their own name
    return [f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
            for k, v in need.items() if getattr(model, k, v) != v]


def layer_count(weights: dict) -> int | None:
    """The number of layers of the original's meta-attention when it is not rumpy's 2."""
    relu = _nonlinearity(weights)
    return len(relu) if isinstance(relu, list) else None


def from_original(model: nn.Module, weights: dict) -> tuple[dict, list[tuple[str, list[str]]]]:
    """`weights` (the original's names) as rumpy's state dict for `model`, and what does not
    fit, in the original's names: [(what, ["key (shape)" ...])] for "missing", "of another
    shape" and "not in the model". Only what fits is in the returned dict."""
    layout = model.original_layout()
    own = model.state_dict()
    expected = _expected(layout, own)
    theirs = {name: key for key, (name, _) in expected.items()}
    converted, missing, wrong = {}, [], []
    for key, (name, shape) in expected.items():
        if name not in weights:
            missing.append(f"{name} {shape}")
            continue
        tensor = weights[name]
        if tuple(tensor.shape) != shape:
            wrong.append(f"{name} {tuple(tensor.shape)}, expected {shape}")
            continue
        if key in layout.special:
            tensor = layout.special[key][0](tensor)
        converted[key] = tensor.reshape(own[key].shape)
    unexpected = [k for k in weights if k not in theirs and not _unused(layout, k)]
    problems = [(what, found) for what, found in (("missing", missing),
                                                  ("of another shape", wrong),
                                                  ("not in the model", unexpected)) if found]
    return converted, problems
