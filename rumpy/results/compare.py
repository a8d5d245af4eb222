"""`rumpy plot`: one PNG overlaying chosen nodes' curves of one summary column."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..tree.node import Node, parse_value  # noqa: E402
from ..utils.atomic import atomic_open  # noqa: E402
from ..core.columns import eval_columns, find_column  # noqa: E402


def baseline(node: Node, column: str) -> tuple[str, float] | None:
    """(name, value) of the task's baseline (bicubic, mean predictor) for a summary column, from
    the node's <name>_baseline.csv (one row per eval set, in the summary's order); None when the
    node has none for it."""
    for path in sorted(node.folder.outputs.glob("*_baseline.csv")):
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, ValueError, csv.Error):
            continue
        means = {r.get("set"): {k: parse_value(v) for k, v in r.items() if k != "set"}
                 for r in rows}
        value = eval_columns(means, [r.get("set") for r in rows]).get(column)
        if isinstance(value, (int, float)) and value == value:
            return path.stem[: -len("_baseline")].replace("_", " "), float(value)
    return None


def plot_nodes(root: Path, column: str, out: Path, branches: list[str] | None = None) -> list[str]:
    """The figure of compare_figure as a PNG at `out`. Returns the nodes drawn."""
    fig, drawn = compare_figure(root, column, branches)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_open(out, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return drawn


def compare_figure(root: Path, column: str, branches: list[str] | None = None):
    """Each node's own epochs as a line, joined to its parent's curve at the fork epoch (a
    marker), so branches read as offshoots, and the task's baseline as a dashed line. `column`
    as find_column reads it ('PSNR' is val-PSNR). Returns (figure, the nodes drawn)."""
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
    summaries = {node: node.summary() for node in nodes}
    columns = list(dict.fromkeys(c for rows in summaries.values() for r in rows for c in r))
    column = find_column(column, columns)
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = []
    for node in nodes:
        rows = [r for r in summaries[node] if r.get(column) is not None]
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
    # The baseline as the single-node plots draw it: one dashed line per distinct value (nodes
    # with other eval sets can have another).
    for (name, value) in sorted({b for n in nodes if (b := baseline(n, column)) is not None}):
        ax.axhline(value, linestyle="--", color="grey", label=f"{name} {value:.4f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    ax.set_title(f"{root.name}: {column}")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig, drawn
