"""Validation metrics, found by name in METRICS."""
from .registry import METRICS, Metric
from . import sr, lpips  # noqa: F401  (registration side effect)

__all__ = ["METRICS", "Metric"]
