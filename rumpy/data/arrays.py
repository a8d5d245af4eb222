"""Dataset kind 'arrays': regression inputs and targets from a .npz (arrays `inputs`, N x F or
N x C x H x W, and `targets`, N x T or N) or a .csv (`input_columns`, `target_columns`). Read and
checked before the run folder exists; every problem is a one-line ConfigError."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ConfigError, RunConfig
from ..registry import did_you_mean
from .kinds import ArraysSet
from .regression import RegressionSet


def _default_names(count: int) -> list[str]:
    return ["target"] if count == 1 else [f"target_{i}" for i in range(count)]


def _from_npz(fail, path: Path, ds: ArraysSet) -> tuple[np.ndarray, np.ndarray, list[str]]:
    for key in ("input_columns", "target_columns"):
        if getattr(ds, key):
            fail(key, f"only for a .csv file; {path.name} is a .npz with arrays `inputs` and "
                      f"`targets`")
    try:
        with np.load(path, allow_pickle=False) as data:
            found = list(data.keys())
            for key in ("inputs", "targets"):
                if key not in found:
                    fail("file", f"{path.name} has no array {key!r} (arrays: {', '.join(found)})")
            inputs, targets = data["inputs"], data["targets"]
    except ConfigError:
        raise
    except Exception as exc:  # zip, pickle or format errors of a damaged file
        fail("file", f"cannot read {path}: {exc}")
    for key, array in (("inputs", inputs), ("targets", targets)):
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            fail("file", f"array {key!r} of {path.name} holds {array.dtype}, expected numbers")
    if inputs.ndim < 2:
        fail("file", f"array 'inputs' of {path.name} has shape {inputs.shape}; expected N x F or "
                     f"N x C x H x W")
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.ndim != 2:
        fail("file", f"array 'targets' of {path.name} has shape {targets.shape}; expected N or "
                     f"N x T")
    if len(inputs) != len(targets):
        fail("file", f"{path.name} has {len(inputs)} inputs but {len(targets)} targets")
    names = list(ds.target_names) or _default_names(targets.shape[1])
    if len(names) != targets.shape[1]:
        fail("target_names", f"{len(names)} names for {targets.shape[1]} target columns")
    return inputs, targets, names


def _from_csv(fail, path: Path, ds: ArraysSet) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import pandas as pd

    if ds.target_names:
        fail("target_names", "only for a .npz file; a CSV's targets are named by target_columns")
    try:
        table = pd.read_csv(path)
    except Exception as exc:
        fail("file", f"cannot read {path}: {exc}")
    columns = [str(c) for c in table.columns]
    for key in ("input_columns", "target_columns"):
        chosen = getattr(ds, key)
        if not chosen:
            fail(key, f"missing: name the CSV's {key.split('_')[0]} columns (columns: "
                      f"{', '.join(columns)})")
        for name in chosen:
            if name not in columns:
                fail(key, f"{path.name} has no column {name!r}{did_you_mean(name, columns)} "
                          f"(columns: {', '.join(columns)})")
    overlap = sorted(set(ds.input_columns) & set(ds.target_columns))
    if overlap:
        fail("target_columns", f"{overlap[0]!r} is an input column too: a model would be given "
                               f"its own target")
    arrays = []
    for key in ("input_columns", "target_columns"):
        part = table[getattr(ds, key)]
        numeric = part.apply(pd.to_numeric, errors="coerce")
        bad = numeric.isna() & part.notna()
        if bad.any().any():
            row, col = next((r, c) for c in bad.columns for r in bad.index[bad[c]])
            fail(key, f"{path.name} row {row + 2}, column {col!r}: {part.at[row, col]!r} is not "
                      f"a number")
        arrays.append(numeric.to_numpy(dtype=np.float64))
    return arrays[0], arrays[1], list(ds.target_columns)


def check_arrays_set(cfg: RunConfig, section: str, label: str, ds: ArraysSet) -> RegressionSet:
    where = f"data.{section}.{label}"

    def fail(key: str, message: str):
        raise ConfigError(cfg.source, f"{where}.{key}", message)

    if not ds.file:
        fail("file", "missing: give a .npz or .csv file")
    path = Path(ds.file)
    if not path.is_file():
        fail("file", f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        fail("file", f"expected a .npz or .csv file, got {path.name}")
    inputs, targets, names = (_from_npz if suffix == ".npz" else _from_csv)(fail, path, ds)
    inputs, targets = ds.selected(inputs), ds.selected(targets)
    if not len(inputs):
        raise ConfigError(cfg.source, where, f"no samples in {path.name}")
    inputs = inputs.astype(np.float32)  # the model's precision: too large a value becomes inf
    for key, array in (("inputs", inputs), ("targets", targets.astype(np.float64))):
        finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if not finite.all():
            fail("file", f"{path.name}: {key} of sample {int(np.argmin(finite))} are not all finite "
                         f"(NaN or inf)")
    return RegressionSet(ds.name, label, ds, [str(i) for i in range(len(inputs))],
                         targets.astype(np.float64), names,
                         inputs=np.ascontiguousarray(inputs, dtype=np.float32))
