"""Finding run folders without reading them: the trees under a folder (never descending into a
run folder, whose branches the tree itself lists), and a branch folder's tree."""
from __future__ import annotations

import os
from pathlib import Path

from .node import Node


def tree_node(path: Path) -> Node:
    """The node at `path` as a node of its whole tree (the tree's root is the outermost run
    folder above it)."""
    path = path.resolve()
    root = path
    while (root.parent / "config.toml").is_file():
        root = root.parent
    return Node(root, path.relative_to(root).as_posix() if path != root else "")


def scan(folder: Path) -> tuple[list[Path], list[Path]]:
    """(outermost run folders, sweep folders with a sweep.json) under `folder`, sorted. Hidden
    folders (.aim, .submitit) are skipped."""
    runs, sweeps = [], []
    for top, dirs, files in os.walk(folder):
        if "sweep.json" in files:
            sweeps.append(Path(top))
        if "config.toml" in files and Path(top) != Path(folder):
            runs.append(Path(top))
            dirs.clear()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(runs), sorted(sweeps)


def start_nodes(folder: Path) -> list[Node]:
    """What a command given `folder` covers: the node there (with its subtree) when it is a run
    folder, else the root of every tree under it."""
    if (folder / "config.toml").is_file():
        return [tree_node(folder)]
    return [Node(run.resolve(), "") for run in scan(folder)[0]]
