"""`rumpy track FOLDER --to mlflow|tensorboard|aim`: run folders replayed into a tracker after the
fact (train with trackers off, publish later, or move to another tracker). Each node gets the run
it would have had in training (a branch's run starts with its inherited rows), found again on a
second replay (MLflow: by the node's tags; TensorBoard: the node's own folder; Aim: the run hash
in status.json), and an epoch already there is not sent again: replaying twice adds nothing. A
node that is training now is skipped (its own process tracks it)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..config.compose import read_toml
from ..tree.lock import NodeLock, NodeLockedError
from ..tree.node import DamagedNode, Node
from ..tree.scan import start_nodes
from .registry import x_of

log = logging.getLogger(__name__)
TARGETS = ("mlflow", "tensorboard", "aim")


class ReplayError(ValueError):
    pass


def _experiment(config: dict) -> str:
    sweep = config.get("sweep") or {}
    return str(sweep.get("name") or config.get("experiment") or "rumpy")


def _save_loc(node: Node, config: dict) -> Path:
    """Where the tree is saved now: its recorded experiment_save_loc when the tree still lies
    in it, else the folder holding the tree (a moved Results folder)."""
    recorded = Path(str(config.get("experiment_save_loc", "")))
    if recorded.is_absolute() and recorded.resolve() in node.root.resolve().parents:
        return recorded
    return node.root.parent


def _eval_sets(config: dict) -> list[str]:
    return list((config.get("data") or {}).get("eval_sets") or {})


def _mlflow(node: Node, config: dict, rows: list[dict], uri: str | None) -> str:
    from .mlflow_tracker import MLflowTracker, default_uri

    uri = uri or (config.get("training") or {}).get("mlflow_uri") or \
        default_uri(_save_loc(node, config))
    tracker = MLflowTracker.for_node(uri, _experiment(config), node, config, _eval_sets(config),
                                     reuse=True, task=config.get("task"))
    if tracker is None:
        raise ReplayError(f"{node.path}: MLflow cannot be used (see the warning above)")
    before = sum(len(s) for s in tracker.logged.values())
    tracker.track_rows(rows)
    added = sum(len(s) for s in tracker.logged.values()) - before
    tracker.close("FINISHED" if node.state() in ("finished", "stopped_early", "pruned")
                  else "KILLED")
    return f"MLflow run {tracker.run_id}: {added} values added"


def _tensorboard(node: Node, config: dict, rows: list[dict], uri: str | None) -> str:
    from .tensorboard_tracker import FOLDER, TensorBoardTracker, last_epoch

    folder = node.path / FOLDER
    done = last_epoch(folder)
    todo = [r for r in rows if x_of(r) > done]
    if not todo:
        return f"TensorBoard {folder}: up to date (epoch {done})"
    from torch.utils.tensorboard import SummaryWriter

    tracker = TensorBoardTracker(SummaryWriter(str(folder)), _eval_sets(config))
    for row in todo:
        tracker.track_row(row)
    tracker.close()
    return f"TensorBoard {folder}: epochs {todo[0]['epoch']}-{todo[-1]['epoch']} added"


def _aim(node: Node, config: dict, rows: list[dict], uri: str | None) -> str:
    from .aim_tracker import AimTracker

    home = Path(uri) if uri else Path((config.get("training") or {}).get("aim_home") or
                                      _save_loc(node, config))
    parent = node.parent
    lineage = {"experiment_dir": str(node.root), "node": node.rel or ".",
               "parent": (parent.rel or ".") if parent else None,
               "parent_aim_run": parent.status.get("aim_run_hash") if parent else None,
               "fork_epoch": node.fork_epoch if node.rel else None,
               "task": config.get("task"), "replayed": True}
    run_hash = node.status.get("aim_run_hash")
    tracker = AimTracker._open(home, _experiment(config), node.rel, run_hash,
                               {"config": config, "lineage": lineage}, _eval_sets(config))
    if tracker is None:
        raise ReplayError(f"{node.path}: Aim cannot be used (see the warning above)")
    todo = rows if tracker.new_run else tracker.untracked(rows)
    for row in todo:
        tracker.track_row(row)
    tracker.close()
    if tracker.hash != run_hash:
        node.set_status(aim_run_hash=tracker.hash)
    return f"Aim run {tracker.hash}: {len(todo)} epochs added"


_REPLAY = {"mlflow": _mlflow, "tensorboard": _tensorboard, "aim": _aim}


def replay(folder: Path, to: str, uri: str | None = None) -> list[str]:
    """One line per node saying what was added. ReplayError when nothing can be replayed."""
    if to not in _REPLAY:
        raise ReplayError(f"--to {to}: expected one of {', '.join(TARGETS)}")
    if not folder.is_dir():
        raise ReplayError(f"{folder}: no such folder")
    starts = start_nodes(folder)
    if not starts:
        raise ReplayError(f"{folder}: no run folders (with config.toml) in it")
    lines = []
    for start in starts:
        for node in _subtree(start):
            lines.append(f"{node.path}: {_replay_node(node, to, uri)}")
    return lines


def _subtree(start: Node):
    yield start
    for child in start.children():
        yield from _subtree(child)


def _replay_node(node: Node, to: str, uri: str | None) -> str:
    lock = NodeLock(node.path)
    try:
        lock.acquire()
    except NodeLockedError:
        return "skipped: it is training now (its own process tracks it)"
    try:
        try:
            rows = node.summary()
            config = read_toml(node.folder.config)
        except (DamagedNode, OSError, ValueError) as exc:
            return f"skipped: {exc}"
        if not rows:
            return "skipped: no epochs yet"
        return _REPLAY[to](node, config, rows, uri)
    finally:
        lock.release()
