"""Data sets rumpy builds itself, so a fresh clone trains with no download.

'quickstart' (paired): the RGB photographs that scikit-image ships, cropped to multiples of 12 (so
every scale 2, 3, 4 divides them) and downsampled as MATLAB's imresize; six for training, two for validation.
'blur_regression' (images_with_targets): patches of those photos blurred with a Gaussian of known
random width and downscaled x2; the target is the width (data/blur_set.py)."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .images import downscale_uint8, write_png
from .registry import BUILTIN_SETS

log = logging.getLogger(__name__)

QUICKSTART_TRAIN = ("astronaut", "hubble_deep_field", "rocket", "retina", "immunohistochemistry",
                    "motorcycle_left")
QUICKSTART_VALID = ("chelsea", "coffee")


def _photo(name: str) -> np.ndarray:
    from skimage import data

    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def _build_split(root: Path, names: tuple[str, ...], scale: int) -> None:
    hr_dir, lr_dir = root / "HR", root / f"LR_x{scale}"
    if lr_dir.is_dir() and hr_dir.is_dir():
        return
    # Build in a temp folder and rename, so a crash or a parallel first use never leaves half a set.
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root.parent if root.parent.exists() else None))
    try:
        (tmp / "HR").mkdir()
        (tmp / lr_dir.name).mkdir()
        for name in names:
            img = _photo(name)[..., :3]
            h, w = img.shape[0] - img.shape[0] % 12, img.shape[1] - img.shape[1] % 12
            img = np.ascontiguousarray(img[:h, :w])
            write_png(tmp / "HR" / f"{name}.png", img)
            write_png(tmp / lr_dir.name / f"{name}x{scale}.png", downscale_uint8(img, scale))
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("HR", lr_dir.name):
            if not (root / sub).exists():
                try:
                    (tmp / sub).rename(root / sub)
                except OSError:  # someone else finished first: theirs is identical
                    pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quickstart(cache_dir: Path, scale: int, role: str) -> tuple[Path, Path]:
    """(lr_dir, hr_dir) of the quickstart split for `role` ('train' or 'eval'), built on first use."""
    split, names = ("train", QUICKSTART_TRAIN) if role == "train" else ("valid", QUICKSTART_VALID)
    # "-imresize": sets built before LR images were MATLAB-exact stay in their old folder unused
    root = cache_dir / "datasets" / "quickstart-imresize" / split
    if not (root / f"LR_x{scale}").is_dir():
        log.info("building the quickstart %s set (x%d) from scikit-image's photos in %s",
                 split, scale, root)
        root.parent.mkdir(parents=True, exist_ok=True)
        _build_split(root, names, scale)
    return root / f"LR_x{scale}", root / "HR"


@BUILTIN_SETS.register("quickstart", kind="paired", fields=("lr", "hr"))
def _quickstart_keys(cache_dir: Path, role: str, cfg) -> dict[str, str]:
    lr_dir, hr_dir = quickstart(cache_dir, cfg.scale, role)
    return {"lr": str(lr_dir), "hr": str(hr_dir)}


@BUILTIN_SETS.register("blur_regression", kind="images_with_targets",
                       fields=("images", "targets"))
def _blur_keys(cache_dir: Path, role: str, cfg) -> dict[str, str]:
    from .blur_set import build_blur_set

    images, targets = build_blur_set(cache_dir / "datasets" / "blur_regression-imresize", role)
    return {"images": str(images), "targets": str(targets)}


def resolve_builtin_sets(cfg) -> None:
    """Fill in the paths of built-in sets named without them (building them on first use), so
    the resolved config names real files."""
    for section, role in (("training_sets", "train"), ("eval_sets", "eval")):
        for ds in getattr(cfg.data, section).values():
            if ds.name not in BUILTIN_SETS or BUILTIN_SETS.meta(ds.name)["kind"] != ds.type:
                continue
            fields = BUILTIN_SETS.meta(ds.name)["fields"]
            if any(getattr(ds, k) for k in fields):  # the user's own files under that name
                continue
            for key, value in BUILTIN_SETS.get(ds.name)(Path(cfg.data.cache_dir), role, cfg).items():
                setattr(ds, key, value)
