"""`rumpy tree`: an experiment's nodes with epochs, fork points, best metric and status."""
from __future__ import annotations

from pathlib import Path

from ..config.load import read_toml
from ..core.columns import resolve
from ..core.monitor import Monitor, infer_mode
from .node import LINEAGE, DamagedNode, Node, read_json


def _period(rows: list[dict]) -> int | None:
    """Steps per epoch of a step-based node's rows (its epochs are validation periods)."""
    for row in rows:
        if row.get("step") not in (None, "") and row.get("epoch"):
            return int(float(row["step"])) // int(row["epoch"])
    return None


def _at(epoch: int, period: int | None) -> str:
    return f"step {epoch * period}" if period else str(epoch)


def _best(node: Node, rows: list[dict]) -> str:
    try:
        column = read_toml(node.folder.config).get("training", {}).get("best_load_metric", "val-PSNR")
    except Exception:  # an unreadable config still gets a line in the tree
        column = "val-PSNR"
    column = resolve(column, list(rows[0]) if rows else [])
    try:
        monitor = Monitor(column, infer_mode(column, directions=node.directions()))
    except ValueError:
        return ""
    monitor.replay(rows)
    if monitor.best is None:
        return ""
    return f"best {column} {monitor.best:.4f} @ {_at(monitor.best_epoch, _period(rows))}"


def describe(node: Node) -> str:
    try:
        return _describe(node)
    except DamagedNode as exc:
        return f"{node.name}  [damaged]  {exc}"


def _describe(node: Node) -> str:
    rows = node.summary()
    own = [r["epoch"] for r in rows if not r.get("inherited")]
    period = _period(rows)
    parts = [node.name, f"[{node.state()}]"]
    if node.rel:
        parts.append(f"fork @ {_at(node.fork_epoch, period)}")
    else:
        init = (read_json(node.path / LINEAGE) or {}).get("init_weights")
        if isinstance(init, dict):
            epoch = f" @ {init['epoch']}" if init.get("epoch") else ""
            parts.append(f"init {init.get('source')}{epoch}")
    if own and period:  # a step-based node: its epochs are validations every `period` steps
        parts.append(f"steps {(int(own[0]) - 1) * period + 1}-{int(own[-1]) * period} "
                     f"(validations {own[0]}-{own[-1]})")
    else:
        parts.append(f"epochs {own[0]}-{own[-1]}" if own else "no epochs yet")
    best = _best(node, rows)
    if best:
        parts.append(best)
    reason = node.status.get("stop_reason")
    if node.state() in ("stopped_early", "pruned") and reason:
        parts.append(f"({reason.split(';')[0]})")
    if not node.exists():
        parts.append("(config.toml missing: a continue recovers it from the checkpoints)")
    return "  ".join(parts)


def render_tree(root: Path) -> str:
    """A run's tree; for a folder of runs (a sweep, Results/) every run's tree, one after the
    other."""
    top = Node(root, "")
    if not top.exists():
        from .scan import start_nodes
        runs = start_nodes(root) if root.is_dir() else []
        if not runs:
            raise FileNotFoundError(f"{root} is not a run folder (no config.toml) and holds "
                                    f"none")
        return "\n".join(_render(run) for run in runs)
    return _render(top)


def _render(top: Node) -> str:
    lines = [describe(top)]

    def walk(node: Node, prefix: str) -> None:
        children = node.children()
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{describe(child)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(top, "")
    return "\n".join(lines)
