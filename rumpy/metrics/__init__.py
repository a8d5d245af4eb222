"""Validation metrics, found by name in METRICS; each declares its task and its direction
(declared.py: the package's, readable without torch; their implementations load at the first
lookup in METRICS)."""
from .registry import METRICS, Metric, higher_is_better, metric_names

__all__ = ["METRICS", "Metric", "higher_is_better", "metric_names"]
