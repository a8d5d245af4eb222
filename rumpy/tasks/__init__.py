"""Tasks, found by the top-level `task` key: 'sisr' (super-resolution) and 'regression'."""
from .base import TASKS, EvalResult, InferenceError, Task
from . import sisr, regression, model_task  # noqa: F401  (registration side effect)

__all__ = ["TASKS", "EvalResult", "InferenceError", "Task"]
