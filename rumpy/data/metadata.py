"""Per-image degradation metadata for paired sets (`degradation_metadata`, `metadata`): values
read from a `rumpy degrade` CSV (degradation_metadata.csv, one row per LR image), each named
parameter normalised to [0, 1] over its configured range (from degradation_config.toml beside
the CSV; without it, over the CSV's own minimum and maximum). Every problem (no CSV, an unknown
or ambiguous column, an image without a row, a value that is not a number) is a one-line
ConfigError naming the set and, where it is about one image, the image."""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np

from ..config import ConfigError, RunConfig
from ..registry import did_you_mean

log = logging.getLogger(__name__)

ON_SITE = "on_site"
CSV_NAME = "degradation_metadata.csv"
CONFIG_NAME = "degradation_config.toml"


def metadata_csv(cfg: RunConfig, ds) -> Path:
    if ds.degradation_metadata == ON_SITE:
        return Path(ds.lr) / CSV_NAME
    path = Path(ds.degradation_metadata).expanduser()
    return path if path.is_absolute() else (Path(cfg.source).resolve().parent / path)


def _ranges(csv_path: Path) -> dict[str, tuple[float, float]]:
    config = csv_path.parent / CONFIG_NAME
    if not config.is_file():
        return {}
    from .degrade import read_pipeline

    try:
        steps = read_pipeline(config, overrides={"hr": ".", "out": "."}).steps
    except ConfigError as exc:
        log.warning("%s: ranges not used (%s); normalising over the CSV's values", config, exc)
        return {}
    return {step.column(k): r for step in steps for k, r in step.op.ranges().items()}


def _column(src: str, where: str, name: str, columns: list[str], csv_path: Path) -> str:
    if name in columns:
        return name
    matches = [c for c in columns if c.endswith(f"-{name}")]  # '0-realesrganblur-sigma_x'
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(src, f"{where}.metadata", f"{name!r} matches {', '.join(matches)} in "
                                                    f"{csv_path}: name one of them in full")
    if name == "blur_kernel":
        raise ConfigError(src, f"{where}.metadata", "'blur_kernel' (the kernel's PCA code) is not "
                                                    "written by rumpy degrade; name the kernel's "
                                                    "parameters instead (sigma_x, sigma_y, rotation)")
    short = sorted({c.split("-", 2)[-1] for c in columns if c != "image"})
    raise ConfigError(src, f"{where}.metadata", f"no column {name!r} in {csv_path}"
                                                f"{did_you_mean(name, short)} (columns: "
                                                f"{', '.join(short)})")


def read_metadata(cfg: RunConfig, where: str, ds, lr_paths: list[Path]) -> np.ndarray | None:
    """N x M float32, row i for lr_paths[i], in the order of `ds.metadata`; None without it."""
    src = cfg.source
    if not ds.metadata:
        return None
    if not ds.degradation_metadata:
        raise ConfigError(src, f"{where}.degradation_metadata",
                          f"missing: metadata = {ds.metadata} needs the CSV: 'on_site' (the LR "
                          f"folder's {CSV_NAME}) or its path")
    csv_path = metadata_csv(cfg, ds)
    if not csv_path.is_file():
        raise ConfigError(src, f"{where}.degradation_metadata", f"file not found: {csv_path}")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if "image" not in columns:
        raise ConfigError(src, f"{where}.degradation_metadata",
                          f"{csv_path} has no 'image' column (a rumpy degrade CSV expected)")
    chosen = [_column(src, where, name, columns, csv_path) for name in ds.metadata]
    by_name = {}
    for row in rows:
        by_name[row["image"]] = row
        by_name.setdefault(Path(row["image"]).stem, row)
    ranges = _column_ranges(rows, chosen, _ranges(csv_path))
    values = np.zeros((len(lr_paths), len(chosen)), dtype=np.float64)
    for i, path in enumerate(lr_paths):
        row = by_name.get(path.name) or by_name.get(path.stem)
        if row is None:
            raise ConfigError(src, f"{where}.degradation_metadata",
                              f"image {path.name} has no row in {csv_path}")
        for j, column in enumerate(chosen):
            try:
                values[i, j] = float(row[column])
            except (TypeError, ValueError):
                raise ConfigError(src, f"{where}.metadata",
                                  f"image {path.name}: {column} is {row[column]!r} in "
                                  f"{csv_path}, not a number") from None
    return normalise(values, [ranges[c] for c in chosen])


def normalise(values: np.ndarray, ranges: list[tuple[float, float]]) -> np.ndarray:
    """N x M raw values -> [0, 1] over each column's (low, high)."""
    out = np.zeros(values.shape, dtype=np.float64)
    for j, (low, high) in enumerate(ranges):
        out[:, j] = (values[:, j] - low) / (high - low) if high > low else 0.0
    return out.astype(np.float32)


def _column_ranges(rows: list[dict], chosen: list[str], ranges: dict) -> dict:
    ranges = dict(ranges)
    for column in chosen:
        if column not in ranges:  # no pipeline config beside the CSV: the values' own span
            all_values = [float(r[column]) for r in rows if _is_number(r.get(column))]
            ranges[column] = (min(all_values), max(all_values))
    return ranges


def metadata_ranges(cfg: RunConfig, where: str, ds) -> list[tuple[float, float]]:
    """The (low, high) each of the set's `metadata` values is normalised over."""
    csv_path = metadata_csv(cfg, ds)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), list(reader)
    chosen = [_column(cfg.source, where, name, columns, csv_path) for name in ds.metadata]
    ranges = _column_ranges(rows, chosen, _ranges(csv_path))
    return [ranges[c] for c in chosen]


_DEGRADE_COLUMN = re.compile(r"^(\d+)-([a-z0-9_]+)-(.+)$")


def target_names(columns: list[str]) -> list[str]:
    """Names for `rumpy degrade` CSV columns used as regression targets: the parameter
    ('0-realesrganblur-sigma_x' -> 'sigma_x'; summary columns cannot hold '-'), with the
    operation ('realesrganblur_sigma_x') or also the step when that is not unique. Other
    columns keep their names."""
    parts = [_DEGRADE_COLUMN.match(c) for c in columns]
    for form in (lambda m: m[3], lambda m: f"{m[2]}_{m[3]}", lambda m: f"{m[1]}_{m[2]}_{m[3]}"):
        names = [form(m) if m else c for m, c in zip(parts, columns)]
        if len(set(names)) == len(names):
            return names
    return list(columns)


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def metadata_length(cfg: RunConfig) -> int:
    """How many metadata values a conditioned model takes: the training sets' `metadata`."""
    sets = list(cfg.data.training_sets.values())
    return len(getattr(sets[0], "metadata", []) or []) if sets else 0


def check_use(cfg: RunConfig, train: list, evals: list, takes_metadata: bool) -> None:
    """Every set delivers the same metadata when the model is conditioned on it."""
    names = {s.name: list(getattr(s.config, "metadata", []) or []) for s in train + evals}
    first = next(iter(cfg.data.training_sets))
    wanted = list(getattr(cfg.data.training_sets[first], "metadata", []) or [])
    if takes_metadata:
        if not wanted:
            raise ConfigError(cfg.source, f"data.training_sets.{first}.metadata",
                              f"{cfg.model.name} is conditioned on degradation metadata: give "
                              f"metadata = [\"sigma_x\", ...] and degradation_metadata = "
                              f"\"on_site\" (or the CSV's path)")
        for s in train + evals:
            if names[s.name] != wanted:
                section = "training_sets" if s in train else "eval_sets"
                raise ConfigError(cfg.source, f"data.{section}.{s.name}.metadata",
                                  f"set {s.name} gives {names[s.name]}, the model takes "
                                  f"{wanted} (every set the same, in the same order)")
    elif any(names.values()):
        log.warning("%s takes no metadata: the sets' metadata keys are ignored", cfg.model.name)
