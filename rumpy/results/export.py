"""`rumpy export`: every node of every result tree under a folder, as one table (pandas)."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..tree.node import DamagedNode, Node
from ..core.monitor import infer_mode
from ..core.columns import STEP_COLUMNS, find_column

log = logging.getLogger(__name__)
ID_COLUMNS = ["experiment", "branch", "parent", "fork_epoch", "inherited", "epoch"]


def find_experiments(folder: Path) -> list[Node]:
    """The root nodes: `folder` itself when it is a run folder, else its run-folder children."""
    if (folder / "config.toml").is_file():
        return [Node(folder, "")]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    roots = [Node(p, "") for p in sorted(folder.iterdir()) if (p / "config.toml").is_file()]
    if not roots:
        raise FileNotFoundError(f"no run folders (with config.toml) in {folder}")
    return roots


def _node_id(node: Node) -> dict:
    parent = node.parent
    return {"experiment": node.root.name, "branch": node.rel or ".",
            "parent": (parent.rel or ".") if parent else "",
            "fork_epoch": node.fork_epoch if node.rel else pd.NA}


def epochs_table(folder: Path) -> pd.DataFrame:
    """Wide: one row per node and epoch, inherited rows included and flagged."""
    records = []  # one frame built once: a frame per node cost ~10 ms a node
    for root in find_experiments(folder):
        for node in root.walk():
            try:  # summary.csv checked against the checkpoints (tree/witness.py)
                rows = node.summary()
                ids = _node_id(node)
            except DamagedNode as exc:
                log.warning("%s; left out of the export", exc)
                continue
            if not rows:
                continue
            records += [{**ids, **row, "inherited": bool(row.get("inherited") or 0)}
                        for row in rows]
    if not records:
        return pd.DataFrame(columns=ID_COLUMNS)
    table = pd.DataFrame.from_records(records)
    ids = _ids(table)
    return table[ids + [c for c in table.columns if c not in ids]]


def _ids(table: pd.DataFrame) -> list[str]:
    """The columns that say where a row is (a step-based node's step and data-epoch too)."""
    return ID_COLUMNS + [c for c in STEP_COLUMNS if c in table.columns]


def long_table(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per node, epoch and metric."""
    ids = _ids(wide)
    values = [c for c in wide.columns if c not in ids]
    long = wide.melt(id_vars=ids, value_vars=values, var_name="metric", value_name="value")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def best_table(wide: pd.DataFrame, metric: str, include_inherited: bool = False) -> pd.DataFrame:
    """One row per node: its best epoch by `metric` (own epochs unless include_inherited)."""
    metric = find_column(metric, [c for c in wide.columns if c not in _ids(wide)])
    higher = infer_mode(metric) == "max"
    pool = wide if include_inherited else wide[~wide["inherited"]]
    groups = pool.dropna(subset=[metric]).groupby(["experiment", "branch"], sort=False)[metric]
    index = groups.idxmax() if higher else groups.idxmin()
    best = pool.loc[index.values].reset_index(drop=True)
    return best.rename(columns={"epoch": "best_epoch"})


def per_image_table(folder: Path, epoch: int) -> pd.DataFrame:
    """Per-image metrics of `epoch` for every node that has them (a branch's inherited epochs
    come from the node that trained them)."""
    frames = []
    for root in find_experiments(folder):
        for node in root.walk():
            owner = node
            while owner.rel and epoch <= owner.fork_epoch:
                owner = owner.parent
            path = owner.folder.outputs / f"per_image_epoch_{epoch}.csv"
            if not path.is_file():
                continue
            frame = pd.read_csv(path)
            ids = {**_node_id(node), "epoch": epoch}
            frames.append(pd.concat([pd.DataFrame([ids] * len(frame)), frame], axis=1))
    if not frames:
        raise FileNotFoundError(f"no per-image metrics of epoch {epoch} under {folder}")
    return pd.concat(frames, ignore_index=True)
