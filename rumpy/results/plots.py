"""PNG plots of summary.csv: loss, learning rate, and each metric (all eval sets and targets in
one plot) with the task's baseline (bicubic, mean predictor) as a dashed line."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from ..utils.atomic import atomic_open  # noqa: E402
from .columns import parse  # noqa: E402


def _series(rows: list[dict], column: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(column)
        if value is not None and value == value:  # skip missing and NaN
            xs.append(row["epoch"])
            ys.append(value)
    return xs, ys


def _save(fig, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_summary(rows: list[dict], columns: list[str], out_dir: Path,
                 baselines: dict[str, float], fork_epoch: int | None = None,
                 baseline_name: str = "bicubic") -> list[Path]:
    """One PNG per quantity; `baselines` maps a column to the baseline value drawn as a line. A
    branch's plots show its inherited epochs too, with the fork point marked."""
    written = []
    groups: dict[str, list[str]] = {"loss": [], "learning_rate": ["learning-rate"]}
    for col in columns:
        info = parse(col)
        if info is not None and info.metric == "loss":
            groups["loss"].append(col)
        elif info is not None and info.subset == "val":
            groups.setdefault(info.metric, []).append(col)
    for name, cols in groups.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        drawn = False
        for col in cols:
            xs, ys = _series(rows, col)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=col)
                drawn = True
            if col in baselines:
                ax.axhline(baselines[col], linestyle="--", color="grey",
                           label=f"{col} ({baseline_name})")
        if not drawn:
            plt.close(fig)
            continue
        if fork_epoch is not None:
            ax.axvspan(min(r["epoch"] for r in rows) - 0.5, fork_epoch, color="grey", alpha=0.12,
                       label="inherited from parent")
            ax.axvline(fork_epoch, color="black", linestyle=":", label=f"fork at epoch {fork_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if name == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"{name} per epoch")
        path = out_dir / f"{name}.png"
        _save(fig, path)
        written.append(path)
    return written
