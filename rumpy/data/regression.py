"""Regression data shared by the 'arrays' and 'images_with_targets' kinds: a checked set of
samples with their targets, the torch datasets over them (batches {"inputs", "targets"}, plus
"index" in evaluation) and the training-set statistics used for normalisation."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import ConfigError, RunConfig
from .cache import ImageStore, choose_mode
from .datasets import augment, to_tensor
from .loaders import Loaders, concat_index, eval_loader, random_crop, train_loader

log = logging.getLogger(__name__)


@dataclass
class RegressionSet:
    """Samples and their (N, T) targets. Array sets hold their inputs; image sets hold paths
    (and sizes) until `load` decodes them."""

    PER_SAMPLE = ("ids", "targets", "inputs", "paths", "sizes")
    name: str
    label: str                               # the table's key: data.<section>.<label>
    config: object
    ids: list[str]
    targets: np.ndarray                      # (N, T) float64, original units
    target_names: list[str]
    inputs: np.ndarray | None = None         # arrays: (N, F) or (N, C, H, W) float32
    paths: list[Path] = field(default_factory=list)        # images
    sizes: list[tuple[int, int]] = field(default_factory=list)
    store: ImageStore | None = None

    @property
    def is_image(self) -> bool:
        return self.inputs is None

    def __len__(self) -> int:
        return len(self.ids)

    def crop(self) -> int:
        return getattr(self.config, "crop", 0)

    def sample_shape(self) -> list[int]:
        """One sample's input shape; 0 for a side that varies between images."""
        if not self.is_image:
            return list(self.inputs.shape[1:])
        if self.crop():
            return [3, self.crop(), self.crop()]
        h, w = self.sizes[0]
        return [3, h if all(s[0] == h for s in self.sizes) else 0,
                w if all(s[1] == w for s in self.sizes) else 0]

    def load(self, cfg: RunConfig) -> None:
        if not self.is_image or self.store is not None:
            return
        decoded = sum(3 * h * w for h, w in self.sizes)
        mode = choose_mode(cfg.data.cache, decoded, cfg.data.cache_memory_limit_gb)
        log.info("%s: %d images, cache '%s' (%.1f MB decoded)", self.name, len(self), mode,
                 decoded / 1e6)
        self.store = ImageStore(self.paths, mode, Path(cfg.data.cache_dir))

    def raw(self, i: int) -> np.ndarray:
        return self.inputs[i] if not self.is_image else self.store[i]


def _image_tensor(img: np.ndarray, top: int, left: int, crop: int) -> np.ndarray:
    return img[top: top + crop, left: left + crop] if crop else img


class TrainSamples(Dataset):
    """Training samples of one or more sets, concatenated; an image's random crop and flips are
    drawn from (seed, epoch, index) like the SR patches."""

    def __init__(self, sets: list[RegressionSet], repeat: list[int], seed: int):
        self.sets = sets
        self.seed = seed
        self.index = concat_index([len(ds) for ds in sets], repeat)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, idx = key
        s, i = self.index[idx]
        ds = self.sets[s]
        target = torch.from_numpy(ds.targets[i])  # float64: normalised on the device
        if not ds.is_image:
            return {"inputs": torch.from_numpy(ds.inputs[i]), "targets": target}
        img = ds.raw(i)
        rng = np.random.default_rng([self.seed, epoch, idx])
        crop = ds.crop()
        if crop:
            img = _image_tensor(img, *random_crop(rng, img.shape[0], img.shape[1], crop), crop)
        if getattr(ds.config, "random_augment", False):
            img, = augment((img,), rng)
        return {"inputs": to_tensor(img), "targets": target}


class EvalSamples(Dataset):
    """One eval set's samples in order (images centre-cropped when `crop` is set)."""

    def __init__(self, ds: RegressionSet):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        ds = self.ds
        target = torch.from_numpy(ds.targets[i])
        if not ds.is_image:
            return {"inputs": torch.from_numpy(ds.inputs[i]), "targets": target, "index": i}
        img, crop = ds.raw(i), ds.crop()
        if crop:
            img = _image_tensor(img, max(0, (img.shape[0] - crop) // 2),
                                max(0, (img.shape[1] - crop) // 2), crop)
        return {"inputs": to_tensor(img), "targets": target, "index": i}


def check_consistent(cfg: RunConfig, train: list[RegressionSet], evals: list[RegressionSet]) -> None:
    """Every set has the same targets and input layout; whole images of different sizes cannot
    share a batch."""
    first = train[0]
    for section, sets in (("training_sets", train), ("eval_sets", evals)):
        for ds in sets:
            where = f"data.{section}.{ds.label}"
            if ds.target_names != first.target_names:
                raise ConfigError(cfg.source, where, f"targets {ds.target_names} differ from "
                                                     f"{first.target_names} of the first training set")
            if ds.is_image != first.is_image or (not ds.is_image and
                                                 ds.inputs.shape[1:] != first.inputs.shape[1:]):
                raise ConfigError(cfg.source, where, f"inputs of shape {ds.sample_shape()} differ "
                                                     f"from {first.sample_shape()} of the first "
                                                     f"training set")
    for section, sets in (("training_sets", train), ("eval_sets", evals)):
        for ds in sets:
            if ds.is_image and 0 in ds.sample_shape():
                raise ConfigError(cfg.source, f"data.{section}.{ds.label}.crop",
                                  "the images differ in size: set a crop (the model's input "
                                  "shape is fixed when it is built)")
            if ds.is_image and getattr(ds.config, "random_augment", False) and \
                    ds.sample_shape()[1] != ds.sample_shape()[2]:
                raise ConfigError(cfg.source, f"data.{section}.{ds.label}."
                                  f"random_augment", "needs square samples (rotations turn "
                                  "them); set a crop")
    crops = {ds.crop() for ds in train}
    if len(crops) > 1:
        raise ConfigError(cfg.source, "data.training_sets",
                          f"every training set needs the same crop (samples share a batch), got "
                          f"{sorted(crops)}")


def build_loaders(cfg: RunConfig, train: list[RegressionSet], evals: list[RegressionSet],
                  pin_memory: bool) -> Loaders:
    for ds in train + evals:
        ds.load(cfg)
    dataset = TrainSamples(train, [ds.config.repeat for ds in train], cfg.training.seed)
    loader, sampler = train_loader(cfg, dataset, pin_memory)
    return Loaders(loader, sampler, eval_loaders(cfg, evals, pin_memory))


def eval_loaders(cfg: RunConfig, evals: list[RegressionSet], pin_memory: bool) -> dict:
    """Each eval set's loader, in order (its samples loaded first)."""
    loaders = {}
    for ds in evals:
        ds.load(cfg)
        sizes = ([tuple(ds.sample_shape()) if ds.crop() else s for s in ds.sizes] if ds.is_image
                 else [0] * len(ds))
        loaders[ds.name] = eval_loader(EvalSamples(ds), sizes, cfg.data.eval_batch_size,
                                       pin_memory)
    return loaders


def input_statistics(train: list[RegressionSet]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (flat inputs) or per-channel (images, C x H x W arrays) mean and std of the
    training inputs, shaped to broadcast over one sample; images in [0, 1]."""
    if train[0].is_image:
        total = np.zeros(3)
        squares = np.zeros(3)
        count = 0
        for ds in train:
            for i in range(len(ds)):
                img = ds.raw(i).reshape(-1, 3).astype(np.float64) / 255.0
                total += img.sum(0)
                squares += (img * img).sum(0)
                count += img.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        shape = (3, 1, 1)
    else:
        x = np.concatenate([ds.inputs for ds in train]).astype(np.float64)
        axes = (0,) if x.ndim == 2 else (0,) + tuple(range(2, x.ndim))
        mean, std = x.mean(axis=axes), x.std(axis=axes)
        shape = (x.shape[1],) + (1,) * (x.ndim - 2)
    std = np.where(std > 1e-12, std, 1.0)  # a constant input is left as it is
    return (torch.tensor(mean, dtype=torch.float32).reshape(shape),
            torch.tensor(std, dtype=torch.float32).reshape(shape))


def target_statistics(train: list[RegressionSet]) -> tuple[torch.Tensor, torch.Tensor]:
    y = np.concatenate([ds.targets for ds in train])
    std = y.std(axis=0)
    return (torch.tensor(y.mean(axis=0), dtype=torch.float64),
            torch.tensor(np.where(std > 1e-12, std, 1.0), dtype=torch.float64))
