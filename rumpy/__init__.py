"""rumpy: one TOML file to a trained super-resolution or regression model.

    model = rumpy.load_experiment("Results/quickstart", epoch="best")
    sr = rumpy.predict(model, "photo.png")
"""

__all__ = ["load_experiment", "predict"]


def __getattr__(name: str):
    # Lazy, so that importing rumpy (and `rumpy --help`) does not import torch.
    if name in __all__:
        from . import inference
        return getattr(inference, name)
    raise AttributeError(f"module 'rumpy' has no attribute {name!r}")
