"""Dataset kind 'paired' (super-resolution): from [data] tables to checked LR/HR image sets and
loaders. Every problem with the data (missing folder, no images, unmatched sizes, crops larger
than images) is a ConfigError raised here, before the run folder exists."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ConfigError, RunConfig
from ..metrics.registry import smallest_image
from .cache import ImageStore, choose_mode
from .datasets import EvalImages, PairedImages, TrainPatches
from .holdout import hold_out, with_held_out
from .images import image_size, list_images
from .kinds import PairedSet
from .loaders import Loaders, eval_loader, train_loader
from .metadata import read_metadata
from .online import OnlineDegradation, check_online
from .pairs import pair_folders
from .standard import select_split, training_split_warning

log = logging.getLogger(__name__)


@dataclass
class CheckedSet:
    """A set whose pairs and sizes have been verified, not yet decoded."""

    PER_SAMPLE = ("keys", "lr_paths", "hr_paths", "lr_sizes", "hr_sizes", "metadata")
    name: str
    config: PairedSet
    keys: list[str]
    lr_paths: list[Path]
    hr_paths: list[Path]
    lr_sizes: list[tuple[int, int]]
    hr_sizes: list[tuple[int, int]]
    metadata: np.ndarray | None = None  # N x M, normalised (data/metadata.py)
    online: OnlineDegradation | None = None  # LR made from HR on the fly (data/online.py)

    def __len__(self) -> int:
        return len(self.keys)


# The original tool's configs for pre-upsampling models (srcnn, vdsr, sparnet) point `lr` at
# bicubic-upscaled copies (e.g. lr_blurred_interp).
_PRE_UPSCALED = ("; these LR images look upscaled already: give the LR images themselves, the "
                 "models that take an upsampled input (srcnn, vdsr, sparnet) upscale them "
                 "(bicubic, as MATLAB)")


def _check_set(cfg: RunConfig, section: str, label: str, ds: PairedSet) -> CheckedSet:
    src = cfg.source
    where = f"data.{section}.{label}"
    role = "train" if section == "training_sets" else "eval"
    scale = cfg.scale or 1
    if getattr(ds, "degradations", None):
        return _check_online_set(cfg, where, ds)
    for key in ("lr", "hr"):
        value = getattr(ds, key)
        if not value:
            raise ConfigError(src, f"{where}.{key}", "missing: give the image folder")
        if not Path(value).is_dir():
            raise ConfigError(src, f"{where}.{key}", f"folder not found: {value}")
    pairs, unmatched = pair_folders(Path(ds.lr), Path(ds.hr), scale)
    if not pairs:
        raise ConfigError(src, where, f"no LR/HR image pairs (png/jpg/bmp/tif, matched by name, "
                                      f"LR may be named like 0001x{scale}.png) in {ds.lr} and {ds.hr}")
    if unmatched:
        log.warning("%s: %d files without a partner ignored (e.g. %s)", where, len(unmatched),
                    ", ".join(unmatched[:3]))
    if ds.lr_interp and ds.lr_interp != "N/A":
        log.info("%s.lr_interp is not read: srcnn and vdsr upscale the LR images themselves",
                 where)
    if ds.image_shortlist:
        pairs = _shortlisted(cfg, where, ds.image_shortlist, pairs)
    keys, note = select_split(ds.name, role, [p.key for p in pairs])
    if note:
        log.info("%s", note)
    warning = training_split_warning(ds.name, role, keys)
    if warning:
        log.warning("%s: %s", where, warning)
    by_key = {p.key: p for p in pairs}
    chosen = [by_key[k] for k in keys]
    chosen = ds.selected(chosen)
    if not chosen:
        raise ConfigError(src, where, "no images left after the standard split and cutoff")
    lr_sizes, hr_sizes = [], []
    for p in chosen:
        try:
            (lh, lw), (hh, hw) = image_size(p.lr), image_size(p.hr)
        except (OSError, ValueError) as exc:
            raise ConfigError(src, where, f"cannot use image: {exc}") from None
        if not (lh * scale <= hh < (lh + 1) * scale and lw * scale <= hw < (lw + 1) * scale):
            raise ConfigError(src, where, f"LR {p.lr} ({lw}x{lh}) and HR {p.hr} ({hw}x{hh}): "
                                          f"expected HR = LR x {scale} ({lw * scale}x{lh * scale})"
                                          + (_PRE_UPSCALED if (lh, lw) == (hh, hw) and scale > 1
                                             else ""))
        lr_sizes.append((lh, lw))
        hr_sizes.append((lh * scale, lw * scale))
    for i in getattr(ds, "val_example_indices", []):
        if not 0 <= i < len(chosen):
            raise ConfigError(src, f"{where}.val_example_indices",
                              f"expected indices 0..{len(chosen) - 1} (the set has {len(chosen)} "
                              f"images), got {i}")
    crop = getattr(ds, "crop", 0)
    smallest = min(min(s) for s in lr_sizes)
    if crop and crop > smallest and role == "train":
        raise ConfigError(src, f"{where}.crop", f"expected at most {smallest} (the smallest LR "
                                                f"image side), got {crop}")
    if role == "eval":
        _check_scorable(cfg, where, min(crop, smallest) if crop else smallest, bool(crop))
    return CheckedSet(ds.name, ds, [p.key for p in chosen], [p.lr for p in chosen],
                      [p.hr for p in chosen], lr_sizes, hr_sizes,
                      read_metadata(cfg, where, ds, [p.lr for p in chosen]))


def _shortlisted(cfg: RunConfig, where: str, shortlist: str, pairs: list) -> list:
    """The pairs whose images the shortlist file names (by file name or stem, LR or HR)."""
    path = Path(shortlist)
    try:
        # a line is a name or a path (the original tool wrote paths): the file name counts
        names = [Path(line.strip()).name for line in path.read_text().splitlines()
                 if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(cfg.source, f"{where}.image_shortlist",
                          f"cannot read {path}: {exc.__class__.__name__}") from None
    index = {}
    for p in pairs:
        for name in (p.key, p.lr.name, p.lr.stem, p.hr.name, p.hr.stem):
            index.setdefault(name, p)
    missing = [n for n in names if n not in index]
    if len(missing) == len(names):
        raise ConfigError(cfg.source, f"{where}.image_shortlist",
                          f"none of the {len(names)} images {path} names (e.g. "
                          f"{names[0] if names else 'none'!r}) has an LR/HR pair here")
    if missing:  # a shortlist of a whole split, of which this folder holds a part
        log.warning("%s.image_shortlist: %d of the %d images %s names have no LR/HR pair here "
                    "(e.g. %s); using the other %d", where, len(missing), len(names), path,
                    missing[0], len(names) - len(missing))
    wanted = {id(index[n]) for n in names if n in index}
    return [p for p in pairs if id(p) in wanted]


def _check_online_set(cfg: RunConfig, where: str, ds) -> CheckedSet:
    src, scale = cfg.source, cfg.scale or 1
    if ds.lr:
        raise ConfigError(src, f"{where}.lr", "give either lr (fixed LR images) or degradations "
                                              "(LR made on the fly), not both")
    if not ds.hr or not Path(ds.hr).is_dir():
        raise ConfigError(src, f"{where}.hr", f"folder not found: {ds.hr}" if ds.hr else
                          "missing: give the HR image folder")
    online = check_online(cfg, where, ds)
    paths = ds.selected(list_images(Path(ds.hr)))
    if not paths:
        raise ConfigError(src, f"{where}.hr", f"no images (png/jpg/bmp/tif) in {ds.hr}")
    sizes = []
    for p in paths:
        try:
            sizes.append(image_size(p))
        except (OSError, ValueError) as exc:
            raise ConfigError(src, where, f"cannot use image: {exc}") from None
        if min(sizes[-1]) < ds.crop * scale:
            raise ConfigError(src, f"{where}.crop", f"{p.name} is {sizes[-1][1]}x{sizes[-1][0]}, "
                                                    f"smaller than the HR patch (crop x scale = "
                                                    f"{ds.crop * scale})")
    return CheckedSet(ds.name, ds, [p.stem for p in paths], paths, paths,
                      [(h // scale, w // scale) for h, w in sizes], sizes, None, online)


def _check_scorable(cfg: RunConfig, where: str, side: int, cropped: bool) -> None:
    """Validation images large enough for every metric (else its value is NaN, every epoch)."""
    t = cfg.training
    border = (cfg.scale or 1) if t.metric_crop_border else 0
    need, metric, own = smallest_image(t.metrics, border, (cfg.task, "image"))
    if side * (cfg.scale or 1) >= need:
        return
    lowest = -(-need // (cfg.scale or 1))
    why = f"{metric} needs {need} HR pixels" + (
        f", {own} after the {border}-pixel border crop" if need > own else "")
    if cropped:
        raise ConfigError(cfg.source, f"{where}.crop", f"expected at least {lowest} (x{(cfg.scale or 1)}: "
                                                       f"{why}), got {side}")
    raise ConfigError(cfg.source, where, f"the smallest image is {side} LR pixels wide (x"
                                         f"{(cfg.scale or 1)}: {why}); expected at least {lowest}")


def check_data(cfg: RunConfig) -> tuple[list[CheckedSet], list[CheckedSet]]:
    train = [_check_set(cfg, "training_sets", k, v) for k, v in cfg.data.training_sets.items()]
    for key in ("crop", "request_crops"):
        values = {getattr(s.config, key) for s in train}
        if len(values) > 1:
            raise ConfigError(cfg.source, "data.training_sets",
                              f"every training set needs the same {key} (patches share a "
                              f"batch), got {sorted(values)}")
    if train[0].config.request_crops > 1 and not train[0].config.crop:
        raise ConfigError(cfg.source, f"data.training_sets.{train[0].name}.request_crops",
                          "needs crop: several patches of one image are cut with crop = N")
    if not train[0].config.crop and cfg.data.batch_size > 1 and len({s for t in train for s in t.lr_sizes}) > 1:
        raise ConfigError(cfg.source, "data.batch_size",
                          "expected 1 when crop = 0 and training images differ in size")
    evals = [_check_set(cfg, "eval_sets", k, v) for k, v in cfg.data.eval_sets.items()]
    train, evals = hold_out(cfg, train, evals, list(cfg.data.training_sets))
    _distinct(cfg, evals)
    return train, evals


def _distinct(cfg: RunConfig, evals: list[CheckedSet]) -> None:
    names = [s.name for s in evals]
    if len(set(names)) != len(names):
        raise ConfigError(cfg.source, "data.eval_sets", f"eval set names must differ, got {names}")


def check_eval_sets(cfg: RunConfig, held_out: bool = False) -> list[CheckedSet]:
    """The eval sets alone (evaluation after training: the training sets need not exist),
    with `held_out` also those the training held out when its data is still there."""
    evals = [_check_set(cfg, "eval_sets", k, v) for k, v in cfg.data.eval_sets.items()]
    if held_out:
        evals = with_held_out(cfg, _check_set, evals)
    _distinct(cfg, evals)
    return evals


def build_eval_loaders(cfg: RunConfig, evals: list[CheckedSet], pin_memory: bool) -> dict:
    loaders = {}
    for checked in evals:
        crop = checked.config.crop
        sizes = [(min(h, crop) if crop else h, min(w, crop) if crop else w)
                 for h, w in checked.lr_sizes]
        loaders[checked.name] = eval_loader(EvalImages(_load(cfg, checked), crop), sizes,
                                            cfg.data.eval_batch_size, pin_memory)
    return loaders


def _load(cfg: RunConfig, checked: CheckedSet) -> PairedImages:
    decoded = sum(3 * (h * w + hh * hw) for (h, w), (hh, hw) in zip(checked.lr_sizes, checked.hr_sizes))
    mode = choose_mode(cfg.data.cache, decoded, cfg.data.cache_memory_limit_gb)
    log.info("%s: %d image pairs, cache '%s' (%.1f MB decoded)", checked.name, len(checked.keys),
             mode, decoded / 1e6)
    cache_dir = Path(cfg.data.cache_dir)
    if checked.online is not None:  # HR only: one store serves both sides
        store = ImageStore(checked.hr_paths, mode, cache_dir)
        return PairedImages(checked.name, checked.keys, store, store, (cfg.scale or 1), None,
                            checked.online)
    return PairedImages(checked.name, checked.keys,
                        ImageStore(checked.lr_paths, mode, cache_dir),
                        ImageStore(checked.hr_paths, mode, cache_dir), (cfg.scale or 1),
                        checked.metadata)


def build_loaders(cfg: RunConfig, train: list[CheckedSet], evals: list[CheckedSet],
                  pin_memory: bool) -> Loaders:
    sets = [_load(cfg, s) for s in train]
    dataset = TrainPatches(sets, crop=train[0].config.crop,
                           augment=[s.config.random_augment and (
                               s.config.use_hflip, s.config.use_vflip, s.config.use_rotation)
                               for s in train],
                           repeat=[s.config.repeat for s in train], seed=cfg.training.seed,
                           request_crops=train[0].config.request_crops)
    loader, sampler = train_loader(cfg, dataset, pin_memory)
    return Loaders(loader, sampler, build_eval_loaders(cfg, evals, pin_memory))


