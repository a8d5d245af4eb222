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
from ..core.monitor import infer_mode  # noqa: E402
from .plots import x_axis  # noqa: E402


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


# Beyond this many nodes the legend names the best TOP_K (by the column's direction); the rest
# are thin grey lines with one legend entry, so the figure keeps its size at 500 nodes.
TOP_K = 10


def _best(rows: list[dict], column: str, mode: str | None) -> float | None:
    values = [r[column] for r in rows if isinstance(r.get(column), (int, float))
              and r[column] == r[column]]
    if not values or mode is None:
        return None
    return max(values) if mode == "max" else min(values)


def compare_figure(root: Path, column: str, branches: list[str] | None = None):
    """Each node's own epochs as a line, joined to its parent's curve at the fork epoch (a
    marker), so branches read as offshoots, and the task's baseline as a dashed line. `column`
    as find_column reads it ('PSNR' is val-PSNR). With more than TOP_K nodes, the TOP_K best are
    coloured and named, the others grey under one legend entry. Returns (figure, the nodes
    drawn)."""
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
    curves = []  # (node, series, fork point or None)
    for node in nodes:
        rows = [r for r in summaries[node] if r.get(column) is not None]
        if column not in (rows[0] if rows else {}):
            continue
        own = [r for r in rows if not r.get("inherited")]
        start = [r for r in rows if r.get("inherited") and r["epoch"] == node.fork_epoch]
        curves.append((node, start + own, start[0] if start else None))
    if not curves:
        raise KeyError(f"no node of {root} has a {column!r} column")
    named = {node for node, _, _ in curves}
    if len(curves) > TOP_K:
        try:
            mode = infer_mode(column, directions=top.directions())
        except ValueError:
            mode = None
        scored = [(b, i, node) for i, (node, series, _) in enumerate(curves)
                  if (b := _best(series, column, mode)) is not None]
        scored.sort(key=lambda t: (-t[0] if mode == "max" else t[0], t[1]))
        named = {node for _, _, node in scored[:TOP_K]} or {c[0] for c in curves[:TOP_K]}
    many = len(curves) > TOP_K
    x = "step" if all(x_axis(series) == "step" for _, series, _ in curves) else "epoch"
    fig, ax = plt.subplots(figsize=(10, 5.5) if many else (8, 5))
    drawn, others = [], 0
    for node, series, fork in curves:  # the others first, beneath the named
        if node in named:
            continue
        others += 1
        ax.plot([r[x] for r in series], [r[column] for r in series], color="0.7",
                linewidth=0.6, alpha=0.6, zorder=1,
                label=f"others ({len(curves) - len(named)} nodes)" if others == 1 else None)
        drawn.append(node.rel or ".")
    for node, series, fork in curves:
        if node not in named:
            continue
        label = node.rel or f"{root.name} (root)"
        line, = ax.plot([r[x] for r in series], [r[column] for r in series], label=label,
                        marker="o" if len(series) < 30 else None, markersize=3, zorder=3)
        if fork is not None:
            ax.plot([fork[x]], [fork[column]], marker="D", color=line.get_color(), zorder=4)
        drawn.append(node.rel or ".")
    order = {n.rel or ".": i for i, n in enumerate(nodes)}
    drawn.sort(key=order.get)
    # The baseline as the single-node plots draw it: one dashed line per distinct value (nodes
    # with other eval sets can have another).
    for (name, value) in sorted({b for n in nodes if (b := baseline(n, column)) is not None}):
        ax.axhline(value, linestyle="--", color="grey", label=f"{name} {value:.4f}")
    ax.set_xlabel(x)
    ax.set_ylabel(column)
    ax.set_title(f"{root.name}: {column}" + (f" ({len(curves)} nodes, the best {len(named)} "
                                             f"named)" if many else ""))
    ax.grid(alpha=0.3)
    if many:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    else:
        ax.legend()
    return fig, drawn
