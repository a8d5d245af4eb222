"""A trained model back from its result-tree node: the node's stored config.toml names the
architecture and its parameters, the epoch's checkpoint holds the weights and (regression) the
data-derived constructor arguments and normalisation statistics, so no training data is needed.

    model = load_experiment("Results/quickstart/lr_half", epoch="best")
    model.rumpy.scale, model.rumpy.epoch       # what predict, eval and export need to know
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..catalog import load_config
from ..config import ConfigError, RunConfig
from ..tasks import TASKS, InferenceError, Task
from ..core.checkpoint import CorruptCheckpoint, load_checkpoint
from ..tree.find import _listing, best_epoch, find_node, load_node_config, parse_epoch, saved_epochs
from ..tree.node import Node

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """What a loaded model's weights alone do not say: attached to the model as `.rumpy`.
    The task's own facts (sisr: scale, pre_upsampled; regression: stats, target_names) are
    read as attributes too (`model.rumpy.scale`)."""

    node: Node
    epoch: int
    checkpoint: Path
    cfg: RunConfig
    task: str
    model_name: str
    model_kwargs: dict                       # the constructor arguments the task supplied
    task_state: dict = field(default_factory=dict)   # the checkpoint's parts["task"]
    summary_row: dict = field(default_factory=dict)  # the epoch's summary.csv row
    facts: dict = field(default_factory=dict)        # Task.loaded_info()
    task_object: object = None                       # the node's Task, set up for nothing yet
    batch_hook: object = None    # the hook that converts a batch dict (export removes it)
    weights: str = "raw"         # 'ema': the EMA weights were loaded (training.ema_decay)

    @property
    def path(self) -> Path:
        return self.node.path

    def __getattr__(self, name: str):
        facts = self.__dict__.get("facts") or {}
        if name in facts:
            return facts[name]
        raise AttributeError(f"{type(self).__name__} of task {self.__dict__.get('task')!r} "
                             f"has no {name!r}")


def make_task(cfg: RunConfig, task_state: dict, device: torch.device) -> Task:
    """The node's task on `cfg`, checked against the registries (this fills the architecture's
    defaults), on `device`, with the checkpoint's task state loaded. Its data is not set up."""
    task = TASKS.get(cfg.task)(cfg)
    try:
        task.check_config()
    except ConfigError as exc:
        raise InferenceError(str(exc)) from None
    task.device = torch.device(device)
    task.load_state_dict(task_state)
    return task


def _node_path(path: str | Path, save_loc: str | Path | None) -> Path:
    """A node folder, or a run name (or name/branch) under `save_loc` (default ./Results)."""
    given = Path(path).expanduser()
    if given.is_dir() or given.is_absolute():
        return given
    under = Path(save_loc if save_loc is not None else "Results").expanduser() / given
    if under.is_dir():
        return under
    if save_loc is not None:
        raise InferenceError(f"{path}: no such run folder, nor a run of that name in {save_loc}")
    return given


def _accept_batches(model: nn.Module, task: Task) -> None:
    """model(batch_dict) runs the task's own conversion of a batch into model inputs, so a
    loaded model takes what the data sets give as well as tensors."""
    def convert(module, args, kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            return task.batch_inputs(args[0]), {}
        return None

    if not task.model_takes_batch:  # else the model takes the batch dict itself
        model.rumpy.batch_hook = model.register_forward_pre_hook(convert, with_kwargs=True)


def load_experiment(path: str | Path, epoch: int | str = "best", device: str | torch.device = "cpu",
                    overrides: dict | None = None, save_loc: str | Path | None = None,
                    weights: str = "ema") -> nn.Module:
    """The model of `epoch` ('best', 'last' or a number) of the node at `path` (a folder, or a
    run name under `save_loc`, default ./Results), in eval mode on `device`, with a LoadedModel
    as its `.rumpy` attribute. `overrides` ({"section.key": value}) change the stored config at
    test time (as pixlib's test_conf), checked like any config; the model then also accepts a
    batch dict as the data sets give it. `weights`: 'ema' (the default) loads the EMA weights
    of a node trained with training.ema_decay (what it validated), 'raw' the trained ones; a
    node without EMA weights has only the raw ones."""
    if weights not in ("ema", "raw"):
        raise InferenceError(f"weights: expected 'ema' or 'raw', got {weights!r}")
    node = find_node(_node_path(path, save_loc))
    choice = parse_epoch(epoch)
    cfg = load_node_config(node, overrides)
    try:
        saved = saved_epochs(node)
    except ValueError as exc:  # a branch whose lineage cannot be read
        raise InferenceError(str(exc)) from None
    if not saved:
        raise InferenceError(f"{node.path} has no saved checkpoint (it stopped before finishing "
                             f"an epoch)")
    if choice == "best":
        choice = best_epoch(node, cfg, saved)
    elif choice == "last":
        choice = max(saved)
    path_ = node.checkpoint_for(choice)
    if path_ is None:
        raise InferenceError(f"{node.path} has no checkpoint of epoch {choice} (saved epochs: "
                             f"{_listing(saved)})")
    try:
        state = load_checkpoint(path_)
    except CorruptCheckpoint as exc:
        raise InferenceError(str(exc)) from None
    task_state = state["parts"].get("task") or {}
    task = make_task(cfg, task_state, torch.device(device))
    kwargs = task.model_kwargs()  # from the config and the checkpoint, never from the data
    try:
        model = task.build_model()
        use_ema = weights == "ema" and state["parts"].get("ema") is not None
        model.load_state_dict(state["parts"]["ema" if use_ema else "model"])
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InferenceError(f"{path_}: cannot build {cfg.model.name} from "
                             f"{node.folder.config} with these weights: {why}") from None
    model.to(device).eval()
    row = next((r for r in node.summary() if r.get("epoch") == choice),
               state.get("summary_row") or {})
    model.rumpy = LoadedModel(
        node=node, epoch=choice, checkpoint=path_, cfg=cfg, task=cfg.task,
        model_name=cfg.model.name, model_kwargs=kwargs, task_state=task_state,
        summary_row=dict(row), facts=task.loaded_info(), task_object=task)
    _accept_batches(model, task)
    model.rumpy.weights = "ema" if use_ema else "raw"
    log.info("loaded %s epoch %d (%s%s%s)", node.path, choice, cfg.model.name,
             f", {task.describe()}" if task.describe() else "", ", EMA weights" if use_ema else "")
    return model


def info_of(model: nn.Module) -> LoadedModel:
    info = getattr(model, "rumpy", None)
    if not isinstance(info, LoadedModel):
        raise InferenceError("expected a model from rumpy.load_experiment (or a node's path); "
                             "this module carries no task, scale or normalisation")
    return info
