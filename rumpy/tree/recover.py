"""A node's config when its config.toml is gone or damaged: every checkpoint carries the config
it was trained with, so a continue recovers it from the newest verified one (and rewrites
config.toml, as every continue does) instead of calling the node absent or reading half a file
as an architecture change."""
from __future__ import annotations

import logging

from ..config import ConfigError
from ..config.compose import read_toml
from ..config.load import stored_config
from ..core.checkpoint import CorruptCheckpoint, load_checkpoint
from .node import Node

log = logging.getLogger(__name__)

SECTIONS = {"experiment", "training", "model", "data"}  # what every config.toml written has


def config_problem(node: Node) -> str | None:
    """Why the node's config.toml cannot be trusted (None when it is whole)."""
    path = node.folder.config
    if not path.is_file():
        return f"{path} is missing"
    try:
        table = read_toml(path)
    except ConfigError as exc:
        return f"{path} is damaged ({exc.message})"
    if not SECTIONS <= set(table):
        return (f"{path} is damaged (it lacks {', '.join(sorted(SECTIONS - set(table)))}; "
                f"a truncated file?)")
    return None


def recoverable(node: Node) -> bool:
    """A folder that was a node: its status or checkpoints are there."""
    return (node.path / "status.json").is_file() or bool(node.own_checkpoints())


def node_config(node: Node) -> dict:
    """The node's config table: config.toml's, or when that is missing or damaged the newest
    verified checkpoint's (with a warning). ValueError when neither can be had."""
    problem = config_problem(node)
    if problem is None:
        return stored_config(node.folder.config)
    for epoch, path in sorted(node.own_checkpoints().items(), reverse=True):
        try:
            table = load_checkpoint(path).get("config") or {}
        except CorruptCheckpoint:
            continue
        if SECTIONS <= set(table):
            log.warning("%s; the config is recovered from %s (each checkpoint holds it) and "
                        "config.toml is rewritten by this continue", problem, path)
            return table
    raise ValueError(f"{problem}, and no verified checkpoint of the node holds its config: "
                     f"restore config.toml")
