"""Using trained models: load a node's model (`load_experiment`), run it on new inputs
(`predict`), evaluate it on test sets (`rumpy eval`, `eval_sisr`) and export it
(`rumpy export-model`). Imported lazily, so `rumpy --help` does not pay for torch."""
from __future__ import annotations

__all__ = ["InferenceError", "LoadedModel", "load_experiment", "predict"]


def __getattr__(name: str):
    if name in ("InferenceError", "LoadedModel", "load_experiment"):
        from . import load
        return getattr(load, name)
    if name == "predict":
        from .prediction import predict
        return predict
    raise AttributeError(f"module 'rumpy.inference' has no attribute {name!r}")
