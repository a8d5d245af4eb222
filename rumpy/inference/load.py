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

from ..config import ConfigError, RunConfig, load_config
from ..models import MODELS, build_model
from ..tasks import TASKS
from ..training.checkpoint import CorruptCheckpoint, load_checkpoint
from ..tree.node import Node
from ..tree.plan import best_saved_epoch

log = logging.getLogger(__name__)


class InferenceError(ValueError):
    """Bad input to load, predict, eval or export: one line saying what and where."""


@dataclass
class LoadedModel:
    """What a loaded model's weights alone do not say: attached to the model as `.rumpy`."""

    node: Node
    epoch: int
    checkpoint: Path
    cfg: RunConfig
    task: str
    model_name: str
    model_kwargs: dict                       # the constructor arguments the task supplied
    scale: int | None = None                 # sisr
    pre_upsampled: bool = False              # sisr: the model takes bicubic-upsampled LR
    stats: dict | None = None                # regression: input/target mean and std (tensors)
    target_names: list[str] = field(default_factory=list)
    normalize_inputs: bool = False
    normalize_targets: bool = False
    task_state: dict = field(default_factory=dict)   # the checkpoint's parts["task"]
    summary_row: dict = field(default_factory=dict)  # the epoch's summary.csv row

    @property
    def path(self) -> Path:
        return self.node.path


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


def _sr_kwargs(cfg: RunConfig, task_state: dict) -> dict:
    if getattr(MODELS.get(cfg.model.name), "takes_metadata", False):
        from ..data.metadata import metadata_length
        return {"scale": cfg.scale, "num_metadata": metadata_length(cfg)}
    return {"scale": cfg.scale}


def _regression_kwargs(cfg: RunConfig, task_state: dict) -> dict:
    kwargs = task_state.get("model_kwargs")
    if not kwargs or not task_state.get("stats"):
        raise InferenceError("the checkpoint holds no model_kwargs/normalisation statistics "
                             "(written by an older rumpy); continue the run one epoch to get a "
                             "checkpoint that does")
    return dict(kwargs)


# The constructor arguments each task supplies, from the config or the checkpoint (never from
# the data: the training sets need not be on this machine).
MODEL_KWARGS = {"sisr": _sr_kwargs, "regression": _regression_kwargs}


def load_experiment(path: str | Path, epoch: int | str = "best", device: str | torch.device = "cpu"
                    ) -> nn.Module:
    """The model of `epoch` ('best', 'last' or a number) of the node at `path`, in eval mode on
    `device`, with a LoadedModel as its `.rumpy` attribute."""
    node = find_node(path)
    choice = parse_epoch(epoch)
    cfg = load_node_config(node)
    if cfg.task not in MODEL_KWARGS:
        raise InferenceError(f"{node.path}: task {cfg.task!r} has no inference support yet")
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
    task = TASKS.get(cfg.task)(cfg)
    try:
        task.check_config()  # fills the architecture's defaults; sisr: pre_upsampled
    except ConfigError as exc:
        raise InferenceError(str(exc)) from None
    task_state = state["parts"].get("task") or {}
    kwargs = MODEL_KWARGS[cfg.task](cfg, task_state)
    try:
        model = build_model(cfg.model.name, cfg.model.internal_params.arch, **kwargs)
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
        model_name=cfg.model.name, model_kwargs=kwargs, scale=cfg.scale,
        pre_upsampled=bool(getattr(MODELS.get(cfg.model.name), "pre_upsampled", False)),
        stats=task_state.get("stats"), target_names=list(task_state.get("target_names") or []),
        normalize_inputs=bool(cfg.data.normalize_inputs),
        normalize_targets=bool(cfg.data.normalize_targets), task_state=task_state,
        summary_row=dict(row))
    log.info("loaded %s epoch %d (%s%s)", node.path, choice, cfg.model.name,
             f", x{cfg.scale}" if cfg.scale else "")
    return model


def info_of(model: nn.Module) -> LoadedModel:
    info = getattr(model, "rumpy", None)
    if not isinstance(info, LoadedModel):
        raise InferenceError("expected a model from rumpy.load_experiment (or a node's path); "
                             "this module carries no task, scale or normalisation")
    return info
