"""Regression metrics over a whole evaluation set, one value per target.

They take all predictions at once rather than per batch because R2 and Pearson are not means of
per-sample values: averaging them over batches would give a different (and batch-size dependent)
number. Inputs are in the targets' original units and computed in float64, so that R2 of a target
with a large mean and small spread does not lose its digits to cancellation."""
from __future__ import annotations

import torch

from .declared import builtin


def _check(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"regression metrics need pred and target of the same (N, T) shape, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    return pred.double(), target.double()


def _constant(x: torch.Tensor) -> torch.Tensor:
    """(T,) bool: columns whose values are all equal. Compared exactly, because the sum of squared
    deviations of a constant column can come out as rounding noise rather than zero."""
    return (x == x[:1]).all(dim=0)


class _RegressionMetric:
    task = "regression"
    protocol = False
    higher_is_better: bool
    name: str

    def __init__(self, device=None):
        # Nothing to load; the argument matches the factory signature every metric has.
        pass

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: (N, T) float64 in original units -> (T,) float64, one value per target."""
        return self.compute(*_check(pred, target))

    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@builtin("mae")
class MAE(_RegressionMetric):

    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs().mean(dim=0)


@builtin("rmse")
class RMSE(_RegressionMetric):

    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).pow(2).mean(dim=0).sqrt()


@builtin("r2")
class R2(_RegressionMetric):
    """Coefficient of determination 1 - SS_res / SS_tot about the target's own mean: 0 for a
    predictor of that mean, negative for worse. NaN for a constant target (SS_tot = 0)."""


    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ss_res = (target - pred).pow(2).sum(dim=0)
        ss_tot = (target - target.mean(dim=0)).pow(2).sum(dim=0)
        r2 = 1.0 - ss_res / ss_tot
        return r2.masked_fill(_constant(target), float("nan"))


@builtin("pearson")
class Pearson(_RegressionMetric):
    """Pearson correlation of prediction and target: rewards ranking and linear agreement even
    when the scale or offset is off (which R2 punishes). NaN when either side is constant."""


    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = pred - pred.mean(dim=0)
        t = target - target.mean(dim=0)
        # One square root of the product, so identical columns give exactly s / sqrt(s * s) = 1.
        r = (p * t).sum(dim=0) / ((p * p).sum(dim=0) * (t * t).sum(dim=0)).sqrt()
        r = r.clamp(-1.0, 1.0)  # rounding can step just past +-1
        return r.masked_fill(_constant(pred) | _constant(target), float("nan"))
