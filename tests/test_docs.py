"""The documentation stays true: every config key is in the reference, every example loads."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rumpy.catalog import load_config
from rumpy.config.schema import (DataConfig, DiscriminatorConfig, InternalParams, ModelConfig,
                                 RunConfig, TrainingConfig)
from rumpy.data.kinds import DATASET_KINDS
from rumpy.metrics import METRICS
from rumpy.models import MODELS
from rumpy.models.registry import model_params
from rumpy.tasks import TASKS
from rumpy.tracking import TRACKERS
from rumpy.core.losses import LOSSES
from rumpy.core.optim import SCHEDULERS
from rumpy.training.setup import check_semantics

KIND_CLASSES = sorted({c for k in DATASET_KINDS for c in (DATASET_KINDS.get(k).train_config,
                                                          DATASET_KINDS.get(k).eval_config)},
                      key=lambda c: c.__name__)

ROOT = Path(__file__).resolve().parents[1]


def _keys(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")
            and not dataclasses.is_dataclass(f.type) and f.name not in ("training_sets", "eval_sets",
                                                                        "training", "model", "data",
                                                                        "internal_params")]


@pytest.mark.parametrize("cls", [RunConfig, TrainingConfig, ModelConfig, InternalParams, DataConfig,
                                 DiscriminatorConfig, *KIND_CLASSES], ids=lambda c: c.__name__)
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
    for registry in (SCHEDULERS, TASKS, LOSSES, TRACKERS, METRICS):
        for name in registry:
            shown = METRICS.get(name).name if registry is METRICS else name
            assert f"| `{shown}` |" in reference, f"{registry.kind} {shown} missing"
    for name in DATASET_KINDS:  # each kind has a section with its keys
        assert f'### `type = "{name}"`' in reference, f"dataset type {name} missing"


@pytest.mark.parametrize("path", sorted((ROOT / "args").glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    from rumpy.config.load import read_toml
    if set(read_toml(path)) == {"data"}:  # a data TOML of test sets for rumpy eval
        from rumpy.inference.eval_data import _read_data_toml
        assert _read_data_toml(path, "sisr")["eval_sets"]
        return
    if "pipeline" in read_toml(path):  # a degradation pipeline for rumpy degrade
        from rumpy.data.degrade import read_pipeline
        assert read_pipeline(path, overrides={"hr": "HR", "out": "LR"}).steps
        return
    if "sweep" in read_toml(path):  # a sweep: every cell's (or search end's) config is checked
        from rumpy.sweep.spec import read_sweep
        sweep = read_sweep(path)
        assert sweep.cells or sweep.search
        return
    cfg = load_config(path)
    check_semantics(cfg)  # model, optimizer, scheduler, loss and metric settings are valid
    assert cfg.model.name in MODELS
