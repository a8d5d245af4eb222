"""`rumpy table` on a search: one row per Optuna trial (the study lists them), sorted by value,
with its parameters, state, seeds and the mean ± std of the metric over its seeds read from its
nodes (sweep/trial.py says how), the best trial's node named; and the study's optimisation
history and parameter importances as PNG plots."""
from __future__ import annotations

import io
import logging
import math
import warnings
from pathlib import Path

import pandas as pd

from ..utils.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)
PLOTS = ("optimization_history.png", "param_importances.png")


def _trial_row(sweep, frozen) -> dict:
    from .trial import best_of, metric_values, trial_nodes

    spec = sweep.search
    nodes = trial_nodes(sweep, frozen.number, frozen.user_attrs)
    state = frozen.state.name.lower()
    if len(nodes) < len(sweep.seeds) and state == "complete":
        log.warning("trial %d: %d of its %d seed nodes are gone; its row uses n = %d",
                    frozen.number, len(sweep.seeds) - len(nodes), len(sweep.seeds), len(nodes))
    series = []
    for node in nodes:
        values = metric_values(node, spec.metric)
        if not values and node.summary() == [] and state in ("complete", "pruned"):
            log.warning("trial %d: %s has no summary.csv rows; left out of its mean (n = %d)",
                        frozen.number, node.path, len(nodes) - 1)
        series.append(values)
    series = [s for s in series if s]
    if state == "pruned" and series:
        epoch = max(series[-1])
        per_seed = [s[epoch] for s in series if epoch in s]
    else:
        per_seed = [v for v in (best_of(s, spec.direction) for s in series) if v is not None]
    if state not in ("complete", "pruned"):
        per_seed = []
    row = {"trial": frozen.number, **frozen.params, "state": state}
    mean = sum(per_seed) / len(per_seed) if per_seed else float("nan")
    row[spec.metric] = mean
    row[f"{spec.metric}-std"] = pd.Series(per_seed).std(ddof=1) if len(per_seed) > 1 \
        else float("nan")
    row["n"] = len(per_seed)
    row["epochs"] = max((max(s) for s in series), default=0)
    row["promoted_from"] = frozen.user_attrs.get("promoted_from")
    row["node"] = ";".join(str(n.path.relative_to(sweep.folder)) for n in nodes)
    return row


def build_search_table(folder: Path) -> tuple[pd.DataFrame, object]:
    from .run import read_manifest
    from .study import load_study

    sweep = read_manifest(folder)
    study = load_study(folder, sweep.name)
    rows = [_trial_row(sweep, t) for t in study.get_trials(deepcopy=False)]
    table = pd.DataFrame(rows)
    metric = sweep.search.metric
    if not len(table):
        return table, sweep
    table = table.sort_values(metric, ascending=sweep.search.direction != "max",
                              na_position="last", kind="stable").reset_index(drop=True)
    table["best"] = ["*" if i == 0 and not math.isnan(table[metric].iloc[0]) else ""
                     for i in range(len(table))]
    return table, sweep


def markdown(table: pd.DataFrame, sweep) -> str:
    metric = sweep.search.metric
    keys = list(sweep.search.space)
    head = ["trial"] + keys + ["state", f"{metric} (mean ± std)", "n", "epochs", "node", "best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        value, std = row[metric], row[f"{metric}-std"]
        shown = "" if math.isnan(value) else f"{value:.4f}" + ("" if math.isnan(std)
                                                                 else f" ± {std:.4f}")
        state = row["state"]
        if isinstance(row.get("promoted_from"), (int, float)) and \
                not math.isnan(row["promoted_from"]):
            state += f" (promotes {int(row['promoted_from'])})"
        cells = [str(row["trial"])] + [_fmt(row[k]) for k in keys] + [
            state, shown, str(row["n"]), str(row["epochs"]), row["node"], row["best"]]
        lines.append("| " + " | ".join(cells) + " |")
    direction = "higher" if sweep.search.direction == "max" else "lower"
    note = (f"\nOptuna study {sweep.name} ({len(table)} trials), {metric} ({direction} is "
            f"better): a complete trial's best epoch, a pruned trial's last step, mean and std "
            f"(n - 1) over its n seeds.\n")
    if len(table) and table["best"].iloc[0] == "*":
        best = table.iloc[0]
        note += (f"Best: trial {best['trial']}, {metric} {best[metric]:.4f}, node "
                 f"{sweep.folder / best['node'].split(';')[0]}\n")
    return "\n".join(lines) + note


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:g}"
    return str(value)


def write_plots(folder: Path, sweep) -> list[Path]:
    """The optimisation history and the parameter importances (Optuna's matplotlib
    visualisation; importances need two complete trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ov

    from .study import load_study

    study = load_study(folder, sweep.name)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's "experimental" notes
        makers = [("optimization_history.png", ov.plot_optimization_history)]
        if len(complete) >= 2:
            makers.append(("param_importances.png", ov.plot_param_importances))
        for name, make in makers:
            try:
                axes = make(study, target_name=sweep.search.metric)
            except (ValueError, RuntimeError) as exc:
                log.info("no %s: %s", name, exc)
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100)
            plt.close(figure)
            atomic_write_bytes(folder / name, buffer.getvalue())
            written.append(folder / name)
    return written


def write_search_table(folder: Path, out: Path | None) -> tuple[str, list[Path]]:
    from .table import TABLE_NAME, TableError

    table, sweep = build_search_table(folder)
    if not len(table):
        raise TableError(f"{folder}: the search has no trials yet")
    text = markdown(table, sweep)
    out = folder if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{TABLE_NAME}.csv", out / f"{TABLE_NAME}.md"
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, text)
    return text, [csv_path, md_path] + write_plots(out, sweep)
