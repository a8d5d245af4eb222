"""Tasks, found by the top-level `task` key: 'sisr' (super-resolution) and 'regression'."""
from .base import TASKS, EvalResult, InferenceError, Task
from . import sisr, regression, model_task  # noqa: F401  (registration side effect)
from . import contrastive  # noqa: F401  (degradation encoders)

__all__ = ["TASKS", "EvalResult", "InferenceError", "Task"]
