"""Experiment trackers beyond the CSV/PNG files (Aim, TensorBoard, MLflow), found by name in
TRACKERS. Tracking never stops training: a tracker that fails warns once and is dropped."""
from .registry import TRACKERS, Tracker
# registration side effect:
from . import aim_tracker, mlflow_tracker, tensorboard_tracker  # noqa: F401

__all__ = ["TRACKERS", "Tracker"]
