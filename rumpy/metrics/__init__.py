"""Validation metrics, found by name in METRICS; each declares its task and its direction."""
from .registry import METRICS, Metric, higher_is_better, metric_names
from . import sr, lpips, regression  # noqa: F401  (registration side effect)

__all__ = ["METRICS", "Metric", "higher_is_better", "metric_names"]
