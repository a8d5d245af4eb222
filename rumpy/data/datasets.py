"""Torch datasets over paired image stores; batches are dicts {"lq", "gt"} (low quality and
ground truth, as BasicSR names them) (+ "index" in
evaluation).

Training randomness (crop position, flips, rotations) is drawn from a generator seeded by
(seed, epoch, index): a sample is the same whichever worker loads it, and an epoch can be redone
exactly. The sampler (data/loaders.py) hands the dataset (epoch, index) keys for that reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import ImageStore
from .loaders import concat_index, random_crop


@dataclass
class PairedImages:
    """A named set of aligned LR/HR images (HR already checked to be LR size x scale, up to
    scale - 1 extra pixels, which are cropped off at the bottom/right)."""

    name: str
    keys: list[str]
    lr: ImageStore
    hr: ImageStore
    scale: int
    metadata: np.ndarray | None = None  # N x M degradation parameters, in [0, 1]
    online: Any = None  # data/online.py: LR patches made from HR patches on the fly

    def __len__(self) -> int:
        return len(self.keys)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lr = self.lr[i]
        h, w = lr.shape[:2]
        return lr, self.hr[i][: h * self.scale, : w * self.scale]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def with_metadata(sample: dict, images: PairedImages, i: int) -> dict:
    if images.metadata is not None:
        sample["metadata"] = torch.from_numpy(images.metadata[i])
    return sample


ALL_AUGMENTS = (True, True, True)


def augment(imgs: tuple[np.ndarray, ...], rng: np.random.Generator,
            allowed: tuple[bool, bool, bool] = ALL_AUGMENTS) -> tuple[np.ndarray, ...]:
    """Random flips and rotation; `allowed` = (use_hflip, use_vflip, use_rotation). The three
    draws are made whatever is allowed, so turning one off changes no other sample."""
    hflip, vflip, turn = rng.integers(0, 2, size=3)
    out = []
    for img in imgs:
        if hflip and allowed[0]:
            img = img[:, ::-1]
        if vflip and allowed[1]:
            img = img[::-1]
        if turn and allowed[2]:
            # With both flips, a transposition reaches the same 8 orientations; alone, only a
            # true 90-degree rotation keeps the image unmirrored.
            img = img.transpose(1, 0, 2) if allowed[:2] == (True, True) else np.rot90(img)
        out.append(img)
    return tuple(out)


class TrainPatches(Dataset):
    """Random aligned LR/HR patches from one or more sets, concatenated."""

    def __init__(self, sets: list[PairedImages], crop: int, augment: list, repeat: list[int],
                 seed: int, request_crops: int = 1):
        self.sets = sets
        self.crop = crop
        # per set: None (no augmentation) or (use_hflip, use_vflip, use_rotation)
        self.augment = [ALL_AUGMENTS if a is True else (a or None) for a in augment]
        self.seed = seed
        self.request_crops = request_crops
        self.index = concat_index([len(ds) for ds in sets], repeat)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, idx = key
        s, i = self.index[idx]
        rng = np.random.default_rng([self.seed, epoch, idx])
        if self.request_crops == 1:
            return self._patch(s, i, rng, np.random.default_rng([self.seed, epoch, idx, 1]))
        patches = [self._patch(s, i, rng, np.random.default_rng([self.seed, epoch, idx, 1, k]))
                   for k in range(self.request_crops)]
        return {k: torch.stack([p[k] for p in patches]) for k in patches[0]}

    def _patch(self, s: int, i: int, rng: np.random.Generator,
               degrade_rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if self.sets[s].online is not None:
            return self._online(self.sets[s], i, rng, degrade_rng, self.augment[s])
        lr, hr = self.sets[s].pair(i)
        if self.crop:
            scale = self.sets[s].scale
            top, left = random_crop(rng, lr.shape[0], lr.shape[1], self.crop)
            lr = lr[top: top + self.crop, left: left + self.crop]
            hr = hr[top * scale: (top + self.crop) * scale, left * scale: (left + self.crop) * scale]
        if self.augment[s]:
            lr, hr = augment((lr, hr), rng, self.augment[s])
        return with_metadata({"lq": to_tensor(lr), "gt": to_tensor(hr)}, self.sets[s], i)


    def _online(self, images: PairedImages, i: int, rng: np.random.Generator,
                degrade_rng: np.random.Generator, augmented) -> dict[str, torch.Tensor]:
        hr = images.hr[i]
        size = self.crop * images.scale
        top, left = random_crop(rng, hr.shape[0], hr.shape[1], size)
        hr = hr[top: top + size, left: left + size]
        if augmented:  # before degrading: the recorded kernel angle is the one applied
            (hr,) = augment((hr,), rng, augmented)
        hr = np.ascontiguousarray(hr)
        lr, meta = images.online(hr, degrade_rng)
        sample = {"lq": to_tensor(lr), "gt": to_tensor(hr)}
        if meta is not None:
            sample["metadata"] = torch.from_numpy(meta)
        return sample


class EvalImages(Dataset):
    """Whole validation images (or a deterministic centre crop), with their index."""

    def __init__(self, images: PairedImages, crop: int = 0):
        self.images = images
        self.crop = crop

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        lr, hr = self.images.pair(i)
        if self.crop:
            s = self.images.scale
            top = max(0, (lr.shape[0] - self.crop) // 2)
            left = max(0, (lr.shape[1] - self.crop) // 2)
            lr = lr[top: top + self.crop, left: left + self.crop]
            hr = hr[top * s: (top + self.crop) * s, left * s: (left + self.crop) * s]
        return with_metadata({"lq": to_tensor(lr), "gt": to_tensor(hr), "index": i}, self.images,
                             i)
