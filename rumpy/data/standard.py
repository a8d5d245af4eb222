"""Standard SR datasets and their splits. When a folder holds a whole standard set, its `name`
selects the split that belongs to the role (training or evaluation); any other name is a label."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class StandardSet:
    size: int                                   # images in the whole set
    train: tuple[int, int] | None = None        # inclusive id range of the training split
    valid: tuple[int, int] | None = None        # inclusive id range of the validation split


STANDARD_SETS = {
    "div2k": StandardSet(900, train=(1, 800), valid=(801, 900)),
    "flickr2k": StandardSet(2650, train=(1, 2650)),
    "set5": StandardSet(5),
    "set14": StandardSet(14),
    "bsds100": StandardSet(100),
    "urban100": StandardSet(100),
    "manga109": StandardSet(109),
}


def _number(key: str) -> int | None:
    match = re.fullmatch(r"\D*(\d+)", key)
    return int(match.group(1)) if match else None


def select_split(name: str, role: str, keys: list[str]) -> tuple[list[str], str]:
    """Keys to use and a note for the log ('' when nothing was selected)."""
    std = STANDARD_SETS.get(name.lower())
    if std is None:
        return keys, ""
    split = std.train if role == "train" else std.valid
    if split is None or len(keys) < std.size:
        # The folder holds one split already (e.g. DIV2K_valid_HR) or a non-split set: use it all.
        return keys, ""
    lo, hi = split
    chosen = [k for k in keys if (n := _number(k)) is not None and lo <= n <= hi]
    return chosen, (f"{name}: folder holds the whole set ({len(keys)} images); using the standard "
                    f"{'training' if role == 'train' else 'validation'} split {lo:04d}-{hi:04d} "
                    f"({len(chosen)} images)")


def training_split_warning(name: str, role: str, keys: list[str]) -> str:
    """A warning when an evaluation set holds only images of a standard training split."""
    std = STANDARD_SETS.get(name.lower())
    if std is None or role == "train" or std.train is None or std.valid is None:
        return ""
    lo, hi = std.train
    numbers = [_number(k) for k in keys]
    if numbers and all(n is not None and lo <= n <= hi for n in numbers):
        return (f"{name}: this evaluation set holds only images of the standard training split "
                f"({lo:04d}-{hi:04d}); validation scores will be optimistic")
    return ""
