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

from ..config import ConfigError, RunConfig, load_config
from ..config.load import read_toml
from ..config.schema import DataConfig
from ..data.arrays import check_arrays_set
from ..data.cache import CacheError, ImageDecodeError
from ..data.datasets import EvalImages
from ..data.holdout import hold_out
from ..data.images_with_targets import check_images_set
from ..data.kinds import DATASET_KINDS
from ..data.loaders import Loaders, eval_loader
from ..data.paired import _check_set, _load
from ..data.regression import EvalSamples
from ..metrics import METRICS
from ..metrics.lpips import LPIPSWeightsError
from ..models import MODELS
from ..registry import did_you_mean
from ..tasks import TASKS, Task
from ..tasks.sisr_eval import Evaluator
from ..training.losses import build_loss
from .load import LoadedModel
from .runner import make_task

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
    default_kind = TASKS.get(task).dataset_kinds[0]
    for table in data["eval_sets"].values():
        if not isinstance(table, dict):
            continue
        name = table.get("type", default_kind)
        if not isinstance(name, str) or name.lower() not in DATASET_KINDS:
            continue
        for f in dataclasses.fields(DATASET_KINDS.get(name).eval_config):
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


def _metrics(cfg: RunConfig, device: torch.device) -> list:
    try:  # LPIPS loads its weights here
        return [METRICS.get(n)(device=device) for n in cfg.training.metrics]
    except LPIPSWeightsError as exc:
        raise ConfigError(cfg.source, "training.metrics", str(exc)) from None


def _held_out(cfg: RunConfig, check, evals: list) -> list:
    """`evals` and the sets the node's training held out (test_indices), when its training
    data is still there to take them from."""
    labels = [label for label, ds in cfg.data.training_sets.items() if ds.test_indices]
    if not labels:
        return evals
    try:
        train = [check(cfg, "training_sets", label, cfg.data.training_sets[label])
                 for label in labels]
    except ConfigError as exc:
        log.warning("the held-out test_indices sets are not evaluated: their training set cannot "
                    "be read (%s)", exc)
        return evals
    return hold_out(cfg, train, evals, labels)[1]


def _sisr(task: Task, cfg: RunConfig, device: torch.device, own_sets: bool = False
          ) -> list[tuple[str, list[str]]]:
    # What SISRTask.setup does for evaluation, without the training loader.
    t = cfg.training
    checked = [_check_set(cfg, "eval_sets", k, v) for k, v in cfg.data.eval_sets.items()]
    if own_sets:
        checked = _held_out(cfg, _check_set, checked)
    names = [s.name for s in checked]
    if len(set(names)) != len(names):
        raise ConfigError(cfg.source, "data.eval_sets", f"eval set names must differ, got {names}")
    for s in checked:  # a conditioned model is evaluated with each image's recorded degradation
        if getattr(task, "takes_metadata", False) and s.metadata is None:
            raise ConfigError(cfg.source, f"data.eval_sets.{s.name}.metadata",
                              f"{cfg.model.name} is conditioned on degradation metadata: give "
                              f"this set degradation_metadata and metadata = "
                              f"{list(cfg.data.training_sets.values())[0].metadata}")
    metrics = _metrics(cfg, device)
    task.metric_keys = [m.name for m in metrics]
    task.criterion = build_loss(cfg.model.internal_params.loss).to(device)
    loaders = {}
    for s in checked:
        crop = s.config.crop
        sizes = [(min(h, crop) if crop else h, min(w, crop) if crop else w) for h, w in s.lr_sizes]
        loaders[s.name] = eval_loader(EvalImages(_load(cfg, s), crop), sizes,
                                      cfg.data.eval_batch_size, device.type == "cuda")
    task.loaders = Loaders(None, None, loaders)
    task._eval_sets = checked
    task.evaluator = Evaluator(metrics, cfg.scale, t.metric_channel, t.metric_crop_border, loaders,
                               {s.name: s.keys for s in checked}, device, 0)
    return [(s.name, s.keys) for s in checked]


_CHECKERS = {"arrays": check_arrays_set, "images_with_targets": check_images_set}


def _regression(task: Task, cfg: RunConfig, device: torch.device, info: LoadedModel,
                own_sets: bool = False) -> list[tuple[str, list[str]]]:
    # What RegressionTask.check_data/setup do for evaluation; the statistics, target names and
    # input shape come from the checkpoint instead of the training sets.
    shape = list(info.model_kwargs["input_shape"])
    fixed = getattr(MODELS.get(info.model_name), "fixed_input_shape", False)
    evals = []
    sets = [(label, _CHECKERS[ds.type](cfg, "eval_sets", label, ds))
            for label, ds in cfg.data.eval_sets.items()]
    if own_sets:
        held = _held_out(cfg, lambda c, s, label, ds: _CHECKERS[ds.type](c, s, label, ds),
                         [checked for _, checked in sets])
        sets += [(f"{ds.label}_test", ds) for ds in held[len(sets):]]
    for label, checked in sets:
        where = f"data.eval_sets.{label}"
        if checked.target_names != info.target_names:
            raise ConfigError(cfg.source, where, f"targets {checked.target_names} differ from "
                                                 f"the model's {info.target_names}")
        got = checked.sample_shape()
        if 0 in got:
            raise ConfigError(cfg.source, f"{where}.crop", "the images differ in size: set a crop")
        if len(got) != len(shape) or got[0] != shape[0] or (fixed and got != shape):
            raise ConfigError(cfg.source, where, f"samples of shape {got}; the model was trained "
                                                 f"on {shape}")
        evals.append(checked)
    names = [ds.name for ds in evals]
    if len(set(names)) != len(names):
        raise ConfigError(cfg.source, "data.eval_sets", f"eval set names must differ, got {names}")
    task.metrics = _metrics(cfg, device)
    task.criterion = build_loss(cfg.model.internal_params.loss).to(device)
    loaders = {}
    for ds in evals:
        ds.load(cfg)
        sizes = ([tuple(ds.sample_shape()) if ds.crop() else s for s in ds.sizes] if ds.is_image
                 else [0] * len(ds))
        loaders[ds.name] = eval_loader(EvalSamples(ds), sizes, cfg.data.eval_batch_size,
                                       device.type == "cuda")
    task._evals = evals
    task.loaders = Loaders(None, None, loaders)
    return [(ds.name, list(ds.ids)) for ds in evals]


def eval_task(info: LoadedModel, cfg: RunConfig, device: torch.device, own_sets: bool = False
              ) -> tuple[Task, list[tuple[str, list[str]]]]:
    """The node's task ready to `evaluate` on cfg's eval sets (with `own_sets`, also the sets
    its training held out with test_indices), and each set's sample names in the order
    evaluation visits them."""
    task = make_task(info, device, cfg)
    task.resolve_builtin_sets()  # a data TOML may name a built-in set without its paths
    try:
        if info.task == "sisr":
            return task, _sisr(task, cfg, device, own_sets)
        return task, _regression(task, cfg, device, info, own_sets)
    except ImageDecodeError as exc:  # a corrupt eval image, named
        raise ConfigError(cfg.source, "data.eval_sets", str(exc)) from None
    except CacheError as exc:
        raise ConfigError(cfg.source, "data.cache_dir", str(exc)) from None
