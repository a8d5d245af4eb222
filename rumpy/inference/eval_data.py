"""Test sets for `rumpy eval`: the node's own eval sets, or the [data.eval_sets.*] tables of a
small data TOML, checked by the same config loader and data checkers as training, and turned
into the task's evaluation loaders WITHOUT the training sets (which need not exist here).

A data TOML holds only

    [data]                                # optional: eval_batch_size, cache, cache_dir, ...
    [data.eval_sets.Set5]
    lr = "Set5/LR_bicubic/X2"             # relative paths: against the data TOML's folder
    hr = "Set5/HR"
"""
from __future__ import annotations

import copy
import logging
import dataclasses
import os
import tempfile
from pathlib import Path

import tomli_w
import torch

from ..catalog import load_config
from ..config import ConfigError, RunConfig
from ..config.load import read_toml
from ..config.schema import DataConfig
from ..data.cache import CacheError, ImageDecodeError
from ..data.kinds import DATASET_KINDS
from ..metrics.lpips import LPIPSWeightsError
from ..registry import did_you_mean
from ..tasks import TASKS, Task
from .load import LoadedModel
from .runner import task_for

log = logging.getLogger(__name__)

# [data] keys a data TOML may set: how the test sets are read, never what the model is.
DATA_KEYS = ("eval_batch_size", "cache", "cache_dir", "cache_memory_limit_gb")


def _absolute(value, base: Path):
    if not isinstance(value, str) or not value:
        return value  # a wrong type is reported by the config loader
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else (base / path).resolve())


def _read_data_toml(path: Path, task: str) -> dict:
    """The data TOML's [data] table, its keys checked and its paths made absolute."""
    raw = read_toml(path)
    allowed = ("eval_sets",) + DATA_KEYS
    for key in raw:
        if key != "data":
            raise ConfigError(str(path), key, f"unknown key{did_you_mean(key, ['data'])}; a data "
                                              f"file holds only [data] and [data.eval_sets.NAME] "
                                              f"tables")
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("eval_sets"), dict) or \
            not data["eval_sets"]:
        raise ConfigError(str(path), "data.eval_sets", "missing: add at least one "
                                                       "[data.eval_sets.NAME] table")
    for key in data:
        if key not in allowed:
            raise ConfigError(str(path), f"data.{key}", f"unknown key"
                                                        f"{did_you_mean(key, list(allowed))} "
                                                        f"(allowed: {', '.join(allowed)})")
    base = path.resolve().parent
    path_fields = {f.name for f in dataclasses.fields(DataConfig) if f.metadata.get("path")}
    for key in set(data) & path_fields:
        data[key] = _absolute(data[key], base)
    spec = TASKS.get(task)
    default_kind = spec.dataset_kinds[0]
    for table in data["eval_sets"].values():
        if not isinstance(table, dict):
            continue
        name = table.get("type", default_kind)
        if not isinstance(name, str) or not DATASET_KINDS.serves(name, spec.scopes()):
            continue
        for f in dataclasses.fields(DATASET_KINDS.get(name, spec.scopes()).eval_config):
            if f.metadata.get("path") and f.name in table:
                table[f.name] = _absolute(table[f.name], base)
    return data


def eval_config(info: LoadedModel, data_toml: str | Path | None) -> RunConfig:
    """The node's config, with the data TOML's eval sets (and reading keys) in place of its
    own when one is given. Problems name the data TOML and the key, as training's do."""
    if data_toml is None:
        cfg = copy.deepcopy(info.cfg)
    else:
        path = Path(data_toml)
        data = _read_data_toml(path, info.task)
        merged = read_toml(info.node.folder.config)
        merged.setdefault("data", {}).update(data)
        # load_config reads a file: the merged config goes through it from a temporary one
        with tempfile.TemporaryDirectory(prefix="rumpy-eval-") as tmp:
            merged_path = Path(tmp) / "config.toml"
            merged_path.write_text(tomli_w.dumps(merged), encoding="utf-8")
            try:
                cfg = load_config(merged_path)
            except ConfigError as exc:
                raise ConfigError(str(path), exc.key_path, exc.message) from None
        cfg.source = str(path)
    cfg.data.dataloader_threads = 0  # no training loader is built
    return cfg


def eval_task(info: LoadedModel, cfg: RunConfig, device: torch.device, own_sets: bool = False
              ) -> tuple[Task, list[tuple[str, list[str]]]]:
    """The node's task set up to `evaluate` cfg's eval sets (with `own_sets`, also the sets its
    training held out with test_indices): the task's own evaluation stage, never a second
    implementation. Returns it and each set's sample names in the order evaluation visits
    them."""
    task = task_for(info, device, cfg)
    task.resolve_builtin_sets()  # a data TOML may name a built-in set without its paths
    try:
        task.setup(device, "evaluate", held_out=own_sets)
    except ImageDecodeError as exc:  # a corrupt eval image, named
        raise ConfigError(cfg.source, "data.eval_sets", str(exc)) from None
    except CacheError as exc:
        raise ConfigError(cfg.source, "data.cache_dir", str(exc)) from None
    except LPIPSWeightsError as exc:
        raise ConfigError(cfg.source, "training.metrics", str(exc)) from None
    return task, task.eval_order()
