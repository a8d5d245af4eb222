"""Architectures are plain nn.Modules registered by name; importing this package registers them."""
from .registry import MODELS, build_model, check_model_params
from . import srcnn, vdsr, edsr, rcan, safmn  # noqa: F401  (registration side effect)

__all__ = ["MODELS", "build_model", "check_model_params"]
