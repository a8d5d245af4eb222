"""What a run is refused for before the tree is planned: a save location or run folder that
cannot hold it (a file, a link, inside another run), a node's log or lock path taken by a
folder, and keys given without the key they act with. Each refusal is a TreeError, one line."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..config.schema import TrainingConfig
from ..utils.folders import folder_problem
from .lock import LOCK_NAME, TREE_LOCK_NAME
from .node import Node


class TreeError(ValueError):
    """A continue or fork that cannot be done as asked; nothing has been written."""


def check_location(save_loc: Path, root: Path) -> None:
    """The save location must be (or can become) a writable folder, and the run folder a real
    folder: never a file, and never a symlink that would lead writes elsewhere."""
    problem = folder_problem(save_loc)
    if problem:
        raise TreeError(f"experiment_save_loc: {problem}")
    if root.is_symlink():
        raise TreeError(f"experiment: {root} is a symbolic link; rumpy writes only into real "
                        f"folders (use the folder it points to as experiment_save_loc)")
    if root.exists() and not root.is_dir():
        raise TreeError(f"experiment: {root} is a file, not a run folder")
    for folder in root.parents:  # a run inside a run: neither could be continued or cleaned
        if (folder / "config.toml").is_file() and ((folder / "status.json").is_file() or
                                                   (folder / "saved_models").is_dir()):
            raise TreeError(f"experiment: {root} would be inside the run folder {folder}; a run "
                            f"holds only its own files and branches (fork it with "
                            f"--continue_from_epoch N --new_branch, or pick a name outside it)")


def file_problem(node: Node) -> str | None:
    """A folder (or anything but a file) where the node keeps its log or the tree its lock:
    found before training, not as a crash after the first epoch."""
    for path in (node.folder.log, node.root / TREE_LOCK_NAME, node.path / LOCK_NAME):
        if path.exists() and not path.is_file():
            return (f"{path} is a folder, where rumpy keeps its "
                    f"{'log' if path.name == 'train.log' else 'lock'} file; remove it")
    return None


def write_problem(node: Node) -> str | None:
    """A folder of the node that rumpy writes in but cannot (a read-only file system or
    mount, permissions): found before training, not as a crash at the first checkpoint."""
    for folder in (node.path, node.folder.models, node.folder.outputs):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            try:
                why = "a read-only file system" if os.statvfs(folder).f_flag & os.ST_RDONLY \
                    else "no write permission"
            except OSError:
                why = "no write permission"
            return (f"{folder} cannot be written ({why}); rumpy writes the node's checkpoints, "
                    f"log and outputs there (copy the node elsewhere to continue it there)")
    return None


def check_needed_keys(t: TrainingConfig) -> None:
    """A key that only acts with another (new_branch_name with new_branch, ...) given alone is
    surely a fork the user expected: refused, not silently ignored."""
    fields = {f.name: f for f in dataclasses.fields(t)}
    for f in fields.values():
        needed = f.metadata.get("needs")
        if needed and getattr(t, f.name) != f.default and getattr(t, needed) in (None, False):
            raise TreeError(f"training.{f.name}: only applies with {needed} "
                            f"({fields[needed].metadata['doc']}); set {needed} too, or remove "
                            f"{f.name}")
