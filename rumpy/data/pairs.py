"""Matching LR files to HR files by name: `0001.png` <-> `0001.png`, or DIV2K's `0001x2.png`."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .images import list_images


@dataclass(frozen=True)
class Pair:
    key: str  # the HR file's stem, used as the image's name in logs and CSVs
    lr: Path
    hr: Path


def _lr_key(stem: str, scale: int) -> str:
    # DIV2K / BasicSR naming: `0001x2`, also `0001_x2` and `0001X2`.
    return re.sub(rf"[_-]?[xX]{scale}$", "", stem)


def pair_folders(lr_dir: Path, hr_dir: Path, scale: int) -> tuple[list[Pair], list[str]]:
    """Pairs sorted by key, plus the names of LR or HR files that found no partner."""
    hr_files = {p.stem: p for p in list_images(hr_dir)}
    lr_files: dict[str, Path] = {}
    for p in list_images(lr_dir):
        key = p.stem if p.stem in hr_files else _lr_key(p.stem, scale)
        lr_files[key] = p
    keys = sorted(hr_files.keys() & lr_files.keys())
    unmatched = sorted({lr_files[k].name for k in lr_files.keys() - hr_files.keys()}
                       | {hr_files[k].name for k in hr_files.keys() - lr_files.keys()})
    return [Pair(k, lr_files[k], hr_files[k]) for k in keys], unmatched
