"""PNG plots of summary.csv: loss, learning rate, and each metric (all eval sets and targets in
one plot) with the task's baseline (bicubic, mean predictor) as a dashed line.

`SummaryPlots` keeps its figures between epochs: an epoch moves the lines' data and redraws,
instead of building, laying out and tight-cropping a new figure (about 4x cheaper), and writes
the PNGs with fast compression (they are small; zlib's default level costs more than it saves).
matplotlib is imported on first use, so runs that never plot never pay for it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..utils.atomic import atomic_open
from ..core.columns import parse

_SIZE = (7, 4.5)
# fixed margins instead of bbox_inches="tight", which draws every figure twice
_MARGINS = {"left": 0.12, "right": 0.97, "bottom": 0.11, "top": 0.93}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def warm() -> None:
    """matplotlib's import, made while the run is being set up (output worker)."""
    _pyplot()


def x_axis(rows: list[dict]) -> str:
    """'step' for a step-based node's rows (its epochs are validation periods), else 'epoch'."""
    return "step" if rows and all(r.get("step") not in (None, "") for r in rows) else "epoch"


def _series(rows: list[dict], column: str, x: str = "epoch") -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(column)
        if value is not None and value == value:  # skip missing and NaN
            xs.append(row[x])
            ys.append(value)
    return xs, ys


def groups(columns: list[str]) -> dict[str, list[str]]:
    """Plot name -> the summary columns drawn in it."""
    out: dict[str, list[str]] = {"loss": [], "learning_rate": ["learning-rate"]}
    for col in columns:
        info = parse(col)
        if info is not None and info.metric == "loss":
            out["loss"].append(col)
        elif info is not None and info.metric == "learning_rate" and info.target:
            out["learning_rate"].append(col)  # another network's rate beside the model's
        elif info is not None and info.subset in ("val", "val_raw"):
            out.setdefault(info.metric, []).append(col)
    return out


@dataclass
class _Figure:
    layout: tuple      # what the figure was built for; a change rebuilds it
    fig: object
    ax: object
    lines: dict        # column -> Line2D


class SummaryPlots:
    """One PNG per quantity, redrawn in place each time `draw` is called."""

    def __init__(self):
        self._figures: dict[Path, _Figure] = {}

    def draw(self, rows: list[dict], columns: list[str], out_dir: Path,
             baselines: dict[str, float], fork_epoch: int | None = None,
             baseline_name: str = "bicubic") -> list[Path]:
        """`baselines` maps a column to the baseline value drawn as a line. A branch's plots
        show its inherited epochs too, with the fork point marked. A plot that cannot be
        written does not keep the others from being written; its error is raised after them."""
        written, error = [], None
        x = x_axis(rows)
        if x == "step" and fork_epoch is not None:  # the fork drawn where its step is
            fork_epoch = next((r["step"] for r in rows if r["epoch"] == fork_epoch), fork_epoch)
        first = min((r[x] for r in rows), default=1)
        for name, cols in groups(columns).items():
            data = {c: _series(rows, c, x) for c in cols}
            drawn = [c for c in cols if data[c][0]]
            if not drawn:
                continue
            path = out_dir / f"{name}.png"
            layout = (tuple(drawn), tuple((c, baselines[c]) for c in cols if c in baselines),
                      fork_epoch, first if fork_epoch is not None else None, baseline_name, x)
            figure = self._figures.get(path)
            if figure is None or figure.layout != layout:
                if figure is not None:
                    _pyplot().close(figure.fig)
                figure = self._figures[path] = self._build(name, layout)
            for col in drawn:
                line = figure.lines[col]
                line.set_data(*data[col])
                line.set_marker("o" if len(data[col][0]) < 30 else "")
            figure.ax.relim()
            figure.ax.autoscale_view()
            try:
                with atomic_open(path, "wb") as handle:
                    figure.fig.savefig(handle, format="png", dpi=100,
                                       pil_kwargs={"compress_level": 1})
            except OSError as exc:
                error = error or exc
                continue
            written.append(path)
        if error is not None:
            raise error
        return written

    @staticmethod
    def _build(name: str, layout: tuple) -> _Figure:
        drawn, baselines, fork_epoch, first, baseline_name, x = layout
        fig, ax = _pyplot().subplots(figsize=_SIZE)
        fig.subplots_adjust(**_MARGINS)
        lines = {col: ax.plot([], [], markersize=3, label=col)[0] for col in drawn}
        for col, value in baselines:
            ax.axhline(value, linestyle="--", color="grey", label=f"{col} ({baseline_name})")
        if fork_epoch is not None:
            ax.axvspan(first - 0.5, fork_epoch, color="grey", alpha=0.12,
                       label="inherited from parent")
            ax.axvline(fork_epoch, color="black", linestyle=":", label=f"fork at {x} {fork_epoch}")
        ax.set_xlabel(x)
        ax.set_ylabel(name)
        if name == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"{name} per {'validation' if x == 'step' else 'epoch'}")
        return _Figure(layout, fig, ax, lines)

    def close(self) -> None:
        for figure in self._figures.values():
            _pyplot().close(figure.fig)
        self._figures.clear()


def plot_summary(rows: list[dict], columns: list[str], out_dir: Path,
                 baselines: dict[str, float], fork_epoch: int | None = None,
                 baseline_name: str = "bicubic") -> list[Path]:
    """The plots once (figures closed afterwards)."""
    plots = SummaryPlots()
    try:
        return plots.draw(rows, columns, out_dir, baselines, fork_epoch, baseline_name)
    finally:
        plots.close()
