"""`rumpy plot`: one PNG overlaying chosen nodes' curves of one summary column."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..tree.node import Node  # noqa: E402
from ..utils.atomic import atomic_open  # noqa: E402


def plot_nodes(root: Path, column: str, out: Path, branches: list[str] | None = None) -> list[str]:
    """Each node's own epochs as a line, joined to its parent's curve at the fork epoch (a
    marker), so branches read as offshoots. Returns the nodes drawn."""
    top = Node(root, "")
    if not top.exists():
        raise FileNotFoundError(f"{root} is not a run folder (no config.toml)")
    nodes = list(top.walk())
    if branches:
        known = {n.rel or ".": n for n in nodes}
        missing = [b for b in branches if b not in known]
        if missing:
            raise KeyError(f"no node {missing[0]!r} in {root} (nodes: {', '.join(known)})")
        nodes = [known[b] for b in branches]
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = []
    for node in nodes:
        rows = [r for r in node.summary() if r.get(column) is not None]
        if column not in (rows[0] if rows else {}):
            continue
        own = [r for r in rows if not r.get("inherited")]
        start = [r for r in rows if r.get("inherited") and r["epoch"] == node.fork_epoch]
        series = start + own
        label = node.rel or f"{root.name} (root)"
        line, = ax.plot([r["epoch"] for r in series], [r[column] for r in series], label=label,
                        marker="o" if len(series) < 30 else None, markersize=3)
        if start:
            ax.plot([start[0]["epoch"]], [start[0][column]], marker="D", color=line.get_color())
        drawn.append(node.rel or ".")
    if not drawn:
        plt.close(fig)
        raise KeyError(f"no node of {root} has a {column!r} column")
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    ax.set_title(f"{root.name}: {column}")
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return drawn
