"""A node from a path, and the epoch a user means by 'best', 'last' or a number: shared by
load_experiment, eval, export, extract, clean and init_weights_path."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import ConfigError, RunConfig, load_config
from ..core.errors import InferenceError
from .node import Node
from .plan import best_saved_epoch


def find_node(path: str | Path) -> Node:
    """The node at `path`: a run folder, or a branch folder inside one. A branch is a node
    folder inside another (its parent holds a config.toml too); walking up to the root makes
    its inherited epochs resolve through its parents."""
    given = Path(path).expanduser().absolute()
    folder = given.resolve()
    if not folder.is_dir():
        raise InferenceError(f"{path}: no such run folder")
    if not (folder / "config.toml").is_file():
        raise InferenceError(f"{path}: not a run folder (no config.toml); give "
                             f"Results/<experiment> or a branch folder inside it")
    # the folders of the tree as given (a link among them resolves away in `folder`)
    step = given
    while (step / "config.toml").is_file():
        if step.is_symlink():
            raise InferenceError(f"{path}: {step} is a symbolic link (to {os.readlink(step)}); "
                                 f"rumpy follows no links in a result tree: give the folder it "
                                 f"points to")
        step = step.parent
    root, rel = folder, []
    while (root.parent / "config.toml").is_file():
        rel.insert(0, root.name)
        root = root.parent
    node = Node(root, "/".join(rel))
    problem = node.link_problem()
    if problem:
        raise InferenceError(f"{path}: {problem}")
    return node


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


def load_node_config(node: Node, overrides: dict | None = None) -> RunConfig:
    """The node's stored config; `overrides` ({"section.key": value}) set keys on top, checked
    like the file's own."""
    values = {k: ("overrides", v) for k, v in (overrides or {}).items()}
    try:
        return load_config(node.folder.config, values=values or None)
    except ConfigError as exc:
        raise InferenceError(str(exc)) from None


