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
from ..training.checkpoint import CorruptCheckpoint, load_checkpoint
from ..tree.node import Node
from ..tree.plan import best_saved_epoch

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

    @property
    def path(self) -> Path:
        return self.node.path

    def __getattr__(self, name: str):
        facts = self.__dict__.get("facts") or {}
        if name in facts:
            return facts[name]
        raise AttributeError(f"{type(self).__name__} of task {self.__dict__.get('task')!r} "
                             f"has no {name!r}")


def find_node(path: str | Path) -> Node:
    """The node at `path`: a run folder, or a branch folder inside one. A branch is a node
    folder inside another (its parent holds a config.toml too); walking up to the root makes
    its inherited epochs resolve through its parents."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise InferenceError(f"{path}: no such run folder")
    if not (folder / "config.toml").is_file():
        raise InferenceError(f"{path}: not a run folder (no config.toml); give "
                             f"Results/<experiment> or a branch folder inside it")
    root, rel = folder, []
    while (root.parent / "config.toml").is_file():
        rel.insert(0, root.name)
        root = root.parent
    return Node(root, "/".join(rel))


def saved_epochs(node: Node) -> dict[int, Path]:
    """Every epoch the node can load: its own files and those it inherits up to each fork."""
    return node.saved_epochs()


def _listing(epochs) -> str:
    return ", ".join(map(str, sorted(epochs))) or "none"


def parse_epoch(value) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) >= 1:
        return int(value)
    if value in ("best", "last"):
        return value
    raise InferenceError(f"epoch: expected 'best', 'last' or an epoch number >= 1, got {value!r}")


def best_epoch(node: Node, cfg: RunConfig, saved: dict[int, Path]) -> int:
    """The best saved epoch by the config's training.best_load_metric, chosen as a continue
    from 'best' chooses it."""
    try:
        epoch, metric, _ = best_saved_epoch(node, cfg.training.best_load_metric)
    except ValueError as exc:
        raise InferenceError(f"{node.path}: training.best_load_metric: {exc}") from None
    if epoch is None:
        raise InferenceError(f"{node.path}: no saved epoch has a {metric} value; pass an epoch "
                             f"(saved epochs: {_listing(saved)})")
    return epoch


def load_node_config(node: Node) -> RunConfig:
    try:
        return load_config(node.folder.config)
    except ConfigError as exc:
        raise InferenceError(str(exc)) from None


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


def load_experiment(path: str | Path, epoch: int | str = "best", device: str | torch.device = "cpu"
                    ) -> nn.Module:
    """The model of `epoch` ('best', 'last' or a number) of the node at `path`, in eval mode on
    `device`, with a LoadedModel as its `.rumpy` attribute."""
    node = find_node(path)
    choice = parse_epoch(epoch)
    cfg = load_node_config(node)
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
        model.load_state_dict(state["parts"]["model"])
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
    log.info("loaded %s epoch %d (%s%s)", node.path, choice, cfg.model.name,
             f", {task.describe()}" if task.describe() else "")
    return model


def info_of(model: nn.Module) -> LoadedModel:
    info = getattr(model, "rumpy", None)
    if not isinstance(info, LoadedModel):
        raise InferenceError("expected a model from rumpy.load_experiment (or a node's path); "
                             "this module carries no task, scale or normalisation")
    return info
