"""A built-in regression data set: how blurred was this low-resolution patch?

Blind super-resolution methods first estimate the degradation of their input (e.g. the width of
the blur kernel) with a small network trained on synthetic pairs; this set mirrors that. Each
sample is a 64x64 crop of one of the RGB photos scikit-image ships (so no download), blurred by an
isotropic Gaussian of a random width sigma ~ U(0.4, 3.0) HR pixels and bicubic-downscaled x2 to a
32x32 uint8 patch. The target is sigma.

Layout: root/<split>/images/<photo>_<k>.png and root/<split>/targets.csv (columns image,blur_sigma),
with split 'train' (six photos) or 'valid' (two other photos, so validation measures generalisation
to unseen content). Everything is seeded: the same files on every machine and every build."""
from __future__ import annotations

import csv
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .images import downscale_uint8, write_png

log = logging.getLogger(__name__)

TRAIN_PHOTOS = ("astronaut", "hubble_deep_field", "rocket", "retina", "immunohistochemistry",
                "motorcycle_left")
VALID_PHOTOS = ("chelsea", "coffee")
DEFAULT_COUNTS = {"train": 1200, "valid": 240}
# One seed per split; a photo's patches come from its own generator seeded with (seed, photo
# index), so the first k patches of a photo do not depend on how many are asked for.
SEEDS = {"train": 20240611, "valid": 20240612}

HR_SIZE = 64
SCALE = 2
SIGMA_RANGE = (0.4, 3.0)
KERNEL_SIZE = 21  # radius 10 covers +-3.3 sigma at the widest blur: the cut-off tail is < 0.1 %
# Mean squared difference of neighbouring luma values (8-bit levels^2) below which a crop is
# redrawn: in flat sky or the retina's dark surround every blur width looks alike, so sigma would
# be unlearnable noise in the targets.
MIN_GRADIENT_ENERGY = 16.0
MAX_DRAWS = 10_000  # per patch; far above what the shipped photos need (a few hundred at most)
CSV_COLUMNS = ("image", "blur_sigma")

_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class BlurSample:
    """One sample before degradation: the file name, the HR crop (64x64x3 uint8) and sigma."""

    name: str
    hr: np.ndarray
    sigma: float


def gaussian_kernel(sigma: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """size x size isotropic Gaussian (float64) summing to 1, centred on the middle pixel."""
    if sigma <= 0 or size < 1 or size % 2 == 0:
        raise ValueError(f"gaussian_kernel needs sigma > 0 and an odd size, got {sigma}, {size}")
    g = _gaussian_1d(sigma, size)
    return np.outer(g, g)


def _gaussian_1d(sigma: float, size: int) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def gaussian_blur(img: np.ndarray, sigma: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """HxWxC image convolved with gaussian_kernel(sigma, size), reflect padding ('dcb|abcd|cba',
    the edge pixel not repeated); float64, same shape, not rounded.

    The kernel is the outer product of a normalised 1-D Gaussian, so it is applied as two 1-D
    passes: the same result to rounding, at 2 * size instead of size^2 multiplies a pixel."""
    g = _gaussian_1d(sigma, size)
    r = size // 2
    x = np.pad(np.asarray(img, dtype=np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    rows = sum(g[k] * x[:, k: k + w] for k in range(size))
    return sum(g[k] * rows[k: k + h] for k in range(size))


def degrade(hr: np.ndarray, sigma: float) -> np.ndarray:
    """HR uint8 patch -> the set's LR uint8 patch: blur, round to 8 bits, bicubic x2 down."""
    blurred = np.clip(np.rint(gaussian_blur(hr, sigma)), 0, 255).astype(np.uint8)
    return downscale_uint8(blurred, SCALE)


def gradient_energy(img: np.ndarray) -> float:
    """Mean squared difference of horizontally and vertically neighbouring luma values."""
    y = np.asarray(img, dtype=np.float64) @ _LUMA
    return 0.5 * (float(np.mean(np.diff(y, axis=0) ** 2)) + float(np.mean(np.diff(y, axis=1) ** 2)))


def _photo(name: str) -> np.ndarray:
    from skimage import data  # imported here: only building the set needs it

    img = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    return np.ascontiguousarray(img[..., :3])


def _split_of(role: str) -> str:
    if role not in ("train", "eval"):
        raise ValueError(f"blur set role must be 'train' or 'eval', got {role!r}")
    return "train" if role == "train" else "valid"


def _count(split: str, count: int | None) -> int:
    count = DEFAULT_COUNTS[split] if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"blur set count must be a positive integer, got {count!r}")
    return count


def blur_samples(split: str, count: int | None = None) -> Iterator[BlurSample]:
    """The split's samples before degradation, in file order: `count` (default 1200 for 'train',
    240 for 'valid') spread evenly over the split's photos, the first photos taking the remainder."""
    photos = {"train": TRAIN_PHOTOS, "valid": VALID_PHOTOS}.get(split)
    if photos is None:
        raise ValueError(f"blur set split must be 'train' or 'valid', got {split!r}")
    count = _count(split, count)
    per_photo, extra = divmod(count, len(photos))
    for index, photo_name in enumerate(photos):
        n = per_photo + (index < extra)
        if n == 0:
            continue
        img = _photo(photo_name)
        rng = np.random.default_rng((SEEDS[split], index))
        for k in range(n):
            hr = _draw_patch(img, rng, f"{photo_name} patch {k}")
            sigma = float(rng.uniform(*SIGMA_RANGE))
            yield BlurSample(f"{photo_name}_{k:04d}.png", hr, sigma)


def _draw_patch(img: np.ndarray, rng: np.random.Generator, what: str) -> np.ndarray:
    """A random HR_SIZE crop with enough detail; redraws consume the generator, so the accepted
    crop is still a pure function of the seed."""
    h, w = img.shape[:2]
    for _ in range(MAX_DRAWS):
        top = int(rng.integers(0, h - HR_SIZE + 1))
        left = int(rng.integers(0, w - HR_SIZE + 1))
        patch = img[top: top + HR_SIZE, left: left + HR_SIZE]
        if gradient_energy(patch) >= MIN_GRADIENT_ENERGY:
            return np.ascontiguousarray(patch)
    raise RuntimeError(f"no detailed crop found for {what} in {MAX_DRAWS} draws")


def _row_count(csv_path: Path) -> int:
    with csv_path.open(newline="") as f:
        return sum(1 for _ in f) - 1


def _existing(folder: Path, wanted: int) -> tuple[Path, Path] | None:
    """(images_dir, targets_csv) of a finished split, None when there is none yet."""
    images_dir, targets_csv = folder / "images", folder / "targets.csv"
    if not (images_dir.is_dir() and targets_csv.is_file()):
        return None
    # A set built with another count must not be handed out as if it were the one asked for.
    found = _row_count(targets_csv)
    if found != wanted:
        raise ValueError(f"the blur set in {folder} holds {found} samples, {wanted} were asked "
                         f"for; delete the folder or use another root")
    return images_dir, targets_csv


def build_blur_set(root: Path, role: str, count: int | None = None) -> tuple[Path, Path]:
    """Builds (once) and returns (images_dir, targets_csv) for role 'train' or 'eval'."""
    split = _split_of(role)
    folder = Path(root) / split
    wanted = _count(split, count)
    done = _existing(folder, wanted)
    if done:
        return done

    log.info("building the blur %s set (%d patches) from scikit-image's photos in %s",
             split, wanted, folder)
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename the whole split in one step, so a crash or a parallel
    # first use never leaves half a set where a reader would take it for a whole one.
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        (tmp / "images").mkdir()
        with (tmp / "targets.csv").open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for sample in blur_samples(split, count):
                write_png(tmp / "images" / sample.name, degrade(sample.hr, sample.sigma))
                writer.writerow((sample.name, repr(sample.sigma)))
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "targets.csv").is_file():  # not a parallel builder finishing first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.debug("blur %s set built in %.1f s", split, time.perf_counter() - start)
    done = _existing(folder, wanted)
    assert done is not None  # just renamed into place, or another builder's
    return done
