"""Dataset kind 'images_with_targets': an image folder and a CSV with a column `image` (the file
name) and one column per target, for image -> vector regression such as predicting a
degradation's parameters. Checked (names, numbers, readable 8-bit images, sizes) before the run
folder exists; images are decoded later, once (data/cache.py)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import ConfigError, RunConfig
from ..registry import did_you_mean
from .images import image_size
from .kinds import ImagesWithTargetsSet
from .regression import RegressionSet


def _outside(name: str) -> bool:
    """An absolute path, or one whose '..' leaves the folder: the CSV must not make a run read
    (or a shared config expose) files elsewhere."""
    normal = os.path.normpath(name)
    return os.path.isabs(name) or normal == ".." or normal.startswith(".." + os.sep)


def target_names(columns: list[str]) -> list[str]:
    from .metadata import target_names as names  # rumpy degrade's '0-op-param' columns
    return names(columns)


def check_images_set(cfg: RunConfig, section: str, label: str,
                     ds: ImagesWithTargetsSet) -> RegressionSet:
    import pandas as pd

    where = f"data.{section}.{label}"

    def fail(key: str, message: str):
        raise ConfigError(cfg.source, f"{where}.{key}" if key else where, message)

    for key in ("images", "targets"):
        if not getattr(ds, key):
            fail(key, "missing: give the image folder" if key == "images" else
                 "missing: give the CSV of targets")
    folder, csv_path = Path(ds.images), Path(ds.targets)
    if not folder.is_dir():
        fail("images", f"folder not found: {folder}")
    if not csv_path.is_file():
        fail("targets", f"file not found: {csv_path}")
    try:
        # an empty cell stays "" (an image name of "nan" would not), checked below
        table = pd.read_csv(csv_path, dtype={"image": str}, keep_default_na=False)
    except Exception as exc:
        fail("targets", f"cannot read {csv_path}: {exc}")
    columns = [str(c) for c in table.columns]
    if "image" not in columns:
        fail("targets", f"{csv_path.name} has no column 'image' (the file names); columns: "
                        f"{', '.join(columns)}")
    chosen = list(ds.target_columns) or [c for c in columns if c != "image"]
    if not chosen:
        fail("targets", f"{csv_path.name} has no target columns besides 'image'")
    for name in chosen:
        if name == "image":
            fail("target_columns", "'image' holds the file names, not a target")
        if name not in columns:
            fail("target_columns", f"{csv_path.name} has no target column {name!r}"
                                   f"{did_you_mean(name, columns)} (columns: {', '.join(columns)})")
    if (table["image"].str.strip() == "").any():
        fail("targets", f"{csv_path.name} row {int((table['image'].str.strip() == '').idxmax()) + 2} "
                        f"has no image name")
    for row, name in enumerate(table["image"], start=2):  # row 1 is the header
        if _outside(name):
            fail("targets", f"{csv_path} row {row}: image {name!r} is outside the images folder "
                            f"{folder}; expected a path relative to it, without '..'")
    table = table.sort_values("image", kind="stable").reset_index(drop=True)
    if table["image"].duplicated().any():
        fail("targets", f"{csv_path.name} lists {table['image'][table['image'].duplicated()].iloc[0]!r} "
                        f"twice")
    table = table.iloc[ds.selected(list(range(len(table))))]
    if table.empty:
        fail("targets", f"{csv_path.name} has no rows")
    values = table[chosen].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        fail("targets", f"{csv_path.name}, image {table['image'][row]!r}, column {chosen[col]!r}: "
                        f"{table[chosen[col]][row]!r} is not a finite number")
    paths, sizes = [], []
    for name in table["image"]:
        path = folder / name
        if not path.is_file():
            fail("targets", f"{csv_path.name} lists {name!r}, which is not in {folder}")
        try:
            sizes.append(image_size(path))
        except (OSError, ValueError) as exc:
            fail("images", f"cannot use image {path}: {exc}")
        paths.append(path)
    crop = getattr(ds, "crop", 0)
    smallest = min(min(s) for s in sizes)
    if crop > smallest:
        fail("crop", f"expected at most {smallest} (the smallest image side), got {crop}")
    return RegressionSet(ds.name, label, ds, list(table["image"]),
                         np.array(values.to_numpy(dtype=np.float64)),  # writable: torch shares it
                         target_names(chosen), paths=paths, sizes=sizes)
