"""Losses, found by name in LOSSES. A config names one (`loss = "l1"`) or a weighted sum, each
term with its own parameters: `loss = {l1 = 1.0, charbonnier = {weight = 0.5, eps = 1e-6}}`."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..limits import NON_NEGATIVE, POSITIVE, check_limits
from ..registry import Registry, did_you_mean
from .optim import accepted_params
from .perceptual import PerceptualLoss, problems as perceptual_problems

LOSSES: Registry = Registry("loss")


class CharbonnierLoss(nn.Module):
    """sqrt((x - y)^2 + eps^2), averaged: a differentiable L1 (Lai et al., LapSRN)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((x - y) ** 2 + self.eps ** 2).mean()


class WeightedSum(nn.Module):
    def __init__(self, terms: list[tuple[float, nn.Module]], names: list[str] | None = None):
        super().__init__()
        self.weights = [w for w, _ in terms]
        self.terms = nn.ModuleList([m for _, m in terms])
        self.names = names or [f"term{i}" for i in range(len(terms))]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum(w * term(x, y) for w, term in zip(self.weights, self.terms))

    def parts(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The sum (the same value as forward) and each weighted term by name."""
        values = {n: w * term(x, y) for n, w, term in zip(self.names, self.weights, self.terms)}
        return sum(values.values()), values


def loss_parts(criterion: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor
               ) -> tuple[torch.Tensor, dict]:
    """A built loss's value and its weighted terms by name (one term: `name`)."""
    if isinstance(criterion, WeightedSum):
        return criterion.parts(x, y)
    value = criterion(x, y)
    return value, {name: value}


LOSSES.register("l1")(nn.L1Loss)
LOSSES.register("mse")(nn.MSELoss)
# eps = 0 has no gradient where output equals target (NaN weights after the first step).
LOSSES.register("charbonnier", limits={"eps": POSITIVE})(CharbonnierLoss)
LOSSES.register("huber", limits={"delta": POSITIVE})(nn.HuberLoss)
LOSSES.register("smooth_l1", limits={"beta": NON_NEGATIVE})(nn.SmoothL1Loss)
LOSSES.register("perceptual")(PerceptualLoss)  # VGG19/VGG16 features (perceptual.py)
# torch's legacy arguments, never meant to be set
_HIDDEN = ("size_average", "reduce", "reduction")


def loss_terms(spec: str | dict) -> list[tuple[str, float, dict]]:
    """(name, weight, parameters) of each term; a string is one term of weight 1."""
    if isinstance(spec, str):
        return [(spec, 1.0, {})]
    terms = []
    for name, value in spec.items():
        if isinstance(value, dict):
            params = {k: v for k, v in value.items() if k != "weight"}
            terms.append((name, value.get("weight", 1.0), params))
        else:
            terms.append((name, value, {}))
    return terms


def check_loss(spec: str | dict) -> list[tuple[str, str]]:
    """Problems as (key path below `loss`, message); empty when build_loss will work."""
    if isinstance(spec, dict) and not spec:
        return [("", "expected at least one loss")]
    problems = []
    for name, weight, params in loss_terms(spec):
        where = "" if isinstance(spec, str) else f".{name}"
        if name not in LOSSES:
            problems.append((where, f"unknown loss {name!r}{did_you_mean(name, LOSSES.names())} "
                                    f"(registered: {', '.join(LOSSES.names())})"))
            continue
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                not math.isfinite(weight) or weight <= 0:
            problems.append((where, f"expected a weight > 0 or a table with `weight`, got "
                                    f"{weight!r}"))
        allowed = [p for p in accepted_params(LOSSES.get(name), ()) if p not in _HIDDEN]
        for key in params:
            if key not in allowed:
                problems.append((f"{where}.{key}", f"not a parameter of loss {name!r}"
                                                   f"{did_you_mean(key, allowed)} (its parameters: "
                                                   f"{', '.join(allowed) or 'none'})"))
        for key, message in check_limits(LOSSES.limits(name), params):
            problems.append((f"{where}.{key}", message))
        if getattr(LOSSES.get(name), "image_loss", False):  # needs images and weights: checked
            problems += [(f"{where}{key}", m) for key, m in perceptual_problems(params)]
            continue
        if not problems:  # values of the right names: build the loss and use it once
            try:
                x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
                value = LOSSES.get(name)(**params)(x, x.flip(0))
                if not torch.isfinite(value):
                    raise ValueError(f"it gives {float(value)} on a test input")
            except Exception as exc:
                problems.append((where, f"loss {name!r} cannot be used with {params}: {exc}"))
    return problems


def build_loss(spec: str | dict) -> nn.Module:
    terms = loss_terms(spec)
    if len(terms) == 1 and terms[0][1] == 1.0:
        name, _, params = terms[0]
        return LOSSES.get(name)(**params)
    return WeightedSum([(float(w), LOSSES.get(n)(**p)) for n, w, p in terms],
                       [n for n, _, _ in terms])
