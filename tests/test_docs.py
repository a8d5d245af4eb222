"""The documentation stays true: every config key is in the reference, every example loads."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rumpy.config import load_config
from rumpy.config.schema import (DataConfig, EvalSetConfig, InternalParams, ModelConfig, RunConfig,
                                 TrainingConfig, TrainingSetConfig)
from rumpy.models import MODELS
from rumpy.models.registry import model_params
from rumpy.training.optim import SCHEDULERS
from rumpy.training.setup import check_semantics

ROOT = Path(__file__).resolve().parents[1]


def _keys(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")
            and not dataclasses.is_dataclass(f.type) and f.name not in ("training_sets", "eval_sets",
                                                                        "training", "model", "data",
                                                                        "internal_params")]


@pytest.mark.parametrize("cls", [RunConfig, TrainingConfig, ModelConfig, InternalParams, DataConfig,
                                 TrainingSetConfig, EvalSetConfig])
def test_every_key_is_documented(cls):
    reference = (ROOT / "docs" / "config.md").read_text()
    for key in _keys(cls):
        assert f"| `{key}` |" in reference, f"{cls.__name__}.{key} missing from docs/config.md"


def test_every_model_parameter_and_scheduler_is_documented():
    reference = (ROOT / "docs" / "config.md").read_text()
    for name in MODELS:
        assert f"| `{name}` |" in reference
        for param in model_params(name):
            assert f"`{param}`" in reference
    for name in SCHEDULERS:
        assert f"| `{name}` |" in reference


@pytest.mark.parametrize("path", sorted((ROOT / "args").glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    cfg = load_config(path)
    check_semantics(cfg)  # model, optimizer, scheduler, loss and metric settings are valid
    assert cfg.model.name in MODELS
