"""Typed configuration: one dataclass per TOML section, loaded and validated in `load`."""
from .errors import ConfigError
from .schema import DataConfig, DatasetConfig, InternalParams, ModelConfig, RunConfig, TrainingConfig
from .load import load_config

__all__ = [
    "ConfigError", "DataConfig", "DatasetConfig", "InternalParams", "ModelConfig", "RunConfig",
    "TrainingConfig", "load_config",
]
