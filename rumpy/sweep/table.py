"""`rumpy table`: one row per setting, mean ± std and n over its seeds of chosen metrics at each
run's best (or last) epoch. A sweep folder groups its cells by the swept keys; any other folder
of runs groups its run folders by the config keys given with --by."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config.compose import flatten, read_toml
from ..registry import did_you_mean
from ..core.columns import resolve
from ..core.monitor import Monitor, infer_mode
from ..tree.node import Node
from ..utils.atomic import atomic_write_text

TABLE_NAME = "sweep_table"
log = logging.getLogger(__name__)


class TableError(ValueError):
    pass


@dataclass
class Entry:
    node: Node
    setting: tuple            # ((key, value), ...) shared by the seeds of one setting
    config: dict              # the node's config.toml, flattened to dotted keys


def _runs(folder: Path) -> list[Node]:
    """Run folders under `folder` (any depth: a name/version layout nests them)."""
    if (folder / "config.toml").is_file():
        return [Node(folder, "")]
    roots = []
    for config in sorted(folder.rglob("config.toml")):
        root = config.parent
        # a branch lies inside its parent's folder: only the outermost run folder is a root
        if not any((p / "config.toml").is_file() for p in root.parents if folder in p.parents
                   or p == folder):
            roots.append(Node(root, ""))
    return roots


def collect(folder: Path, by: list[str] | None) -> tuple[list[str], list[Entry]]:
    """The grouping keys and every run with its setting."""
    if not folder.is_dir():
        raise TableError(f"{folder}: no such folder")
    manifest = folder / "sweep.json"
    if by is None and manifest.is_file():
        from .run import ManifestError, read_manifest

        try:
            sweep = read_manifest(folder)
        except ManifestError as exc:
            raise TableError(str(exc)) from None
        by = list(sweep.grid)
        nodes = [Node(folder / c.name, "") for c in sweep.cells]
        gone = [n for n in nodes if not n.exists()]
        for node in gone:  # listed, but its folder or config.toml is gone: said, not dropped
            if node.path.is_dir():
                log.warning("cell %s has no config.toml; it is left out of the table",
                            node.path.name)
        nodes = [n for n in nodes if n.exists()]
    else:
        nodes = _runs(folder)
    if not nodes:
        raise TableError(f"{folder}: no run folders (with config.toml) in it")
    by = by or []
    entries = []
    for node in nodes:
        try:
            config = flatten(read_toml(node.folder.config))
        except Exception as exc:  # a damaged config: that run cannot be placed in a group
            raise TableError(f"{node.folder.config}: {exc}") from None
        missing = [k for k in by if k not in config]
        if missing:
            raise TableError(f"--by {missing[0]}: not a key of {node.folder.config}"
                             f"{did_you_mean(missing[0], list(config))}")
        entries.append(Entry(node, tuple((k, config[k]) for k in by), config))
    return by, entries


def _row_at(entry: Entry, at: str) -> dict | None:
    rows = entry.node.summary()
    if not rows:
        return None
    if at == "last":
        return rows[-1]
    column = resolve(str(entry.config.get("training.best_load_metric", "val-PSNR")), list(rows[0]))
    try:
        monitor = Monitor(column, infer_mode(column, directions=entry.node.directions()))
    except ValueError:
        return rows[-1]
    monitor.replay(rows)
    if monitor.best_epoch is None:
        return rows[-1]
    return next(r for r in rows if r["epoch"] == monitor.best_epoch)


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        f"{value:.4f}" if isinstance(value, float) else str(value)


FINAL = ("finished", "stopped_early")


def build_table(folder: Path, metrics: list[str] | None = None, at: str = "best",
                by: list[str] | None = None, every_state: bool = False
                ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(table, grouping keys, metric columns): a row per setting with <metric> (mean),
    <metric>-std, n and `best` (the setting with the best mean of the first metric). Runs
    that are not finished or stopped early are left out (and counted in a warning) unless
    `every_state`."""
    keys, entries = collect(folder, by)
    if not every_state:
        left = [e for e in entries if e.node.state() not in FINAL]
        if left:
            log.warning("left out %d run(s) that are not finished (%s); --all includes them",
                        len(left), ", ".join(sorted({e.node.state() for e in left})))
        entries = [e for e in entries if e.node.state() in FINAL]
    picked = [(e, _row_at(e, at)) for e in entries]
    for entry, row in picked:
        if row is None and entry.node.state() in FINAL:  # its summary.csv is gone or empty
            log.warning("run %s has no summary.csv rows; it is left out of the table (see n)",
                        entry.node.path)
    picked = [(e, r) for e, r in picked if r is not None]
    if not picked:
        raise TableError(f"{folder}: no run has finished an epoch yet")
    columns = list(dict.fromkeys(c for _, r in picked for c in r))
    if not metrics:
        first = picked[0][0].config.get("training.best_load_metric", "val-PSNR")
        metrics = [str(first)]
    metrics = [resolve(m, columns) for m in metrics]
    for metric in metrics:
        if metric not in columns:
            shown = ", ".join(c for c in columns if c.startswith(("val-", "train-")))
            raise TableError(f"--metric {metric}: no such summary column (columns: {shown})")
    groups: dict[tuple, list[dict]] = {}
    for entry, row in picked:
        groups.setdefault(entry.setting, []).append(row)
    out = []
    for setting, rows in groups.items():
        record = {k: v for k, v in setting}
        for metric in metrics:
            values = pd.Series([r.get(metric) for r in rows], dtype="float64").dropna()
            record[metric] = values.mean() if len(values) else float("nan")
            record[f"{metric}-std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
        record["n"] = len(rows)
        record["epochs"] = ",".join(str(r["epoch"]) for r in rows)
        out.append(record)
    table = pd.DataFrame(out)
    lead = metrics[0]
    ascending = infer_mode(lead) != "max"
    table = table.sort_values(lead, ascending=ascending, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    table["best"] = ["*" if i == 0 and not math.isnan(table[lead].iloc[0]) else ""
                     for i in range(len(table))]
    return table, keys, metrics


def markdown(table: pd.DataFrame, keys: list[str], metrics: list[str], at: str) -> str:
    head = keys + [f"{m} (mean ± std)" for m in metrics] + ["n", "best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [_fmt(row[k]) for k in keys]
        for m in metrics:
            std = row[f"{m}-std"]
            cells.append(_fmt(row[m]) + ("" if math.isnan(std) else f" ± {std:.4f}"))
        cells += [str(row["n"]), row["best"]]
        lines.append("| " + " | ".join(cells) + " |")
    note = f"\nAt each run's {at} epoch" + (" (by its best_load_metric)" if at == "best" else "")
    return "\n".join(lines) + note + "; mean and std (n - 1) over the n runs of each row.\n"


def write_table(folder: Path, metrics: list[str] | None = None, at: str = "best",
                by: list[str] | None = None, out: Path | None = None,
                every_state: bool = False) -> tuple[str, list[Path]]:
    """The table as markdown, written as sweep_table.csv/.md into `out`, or into the sweep
    folder for a sweep's own table; nothing is written for other tables without `out` (never
    into a run folder)."""
    if by is None and (folder / "sweep.json").is_file() and _is_search(folder):
        from .search_table import write_search_table

        if metrics or at != "best" or every_state:
            log.warning("a search's table ranks its trials by the search's own metric: --metric, "
                        "--at and --all apply with --by (a table of the trials' nodes by "
                        "settings)")
        return write_search_table(folder, out)
    table, keys, metrics = build_table(folder, metrics, at, by, every_state)
    text = markdown(table, keys, metrics, at)
    if out is None:
        if by is not None or not (folder / "sweep.json").is_file():
            return text, []
        out = folder
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{TABLE_NAME}.csv", out / f"{TABLE_NAME}.md"
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, text)
    return text, [csv_path, md_path]


def _is_search(folder: Path) -> bool:
    from .run import ManifestError, read_manifest

    try:
        return read_manifest(folder).search is not None
    except ManifestError as exc:
        raise TableError(str(exc)) from None
