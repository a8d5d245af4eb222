"""Data of task 'contrastive' (degradation encoders, tasks/contrastive.py).

Training: `paired` sets with `hr` and an online `degradations` pipeline (data/online.py). Each
visit of an image draws one degradation and cuts `request_crops` HR patches from the image; every
patch gets that same degradation, so the crops of one image are positives of each other (the
original tool degraded the whole image once and cut its crops from it). Every choice comes from
generators seeded by (seed, epoch, index), as every rumpy training set.

Labels: the original tool's degradation classes. Each degradation family the model's `data_type`
names (`blur`, `noise`, `compression`) adds decisions, in the original's order noise,
compression, blur; a label is the mixed-radix number of the decisions:
- noise: gaussian or poisson, grey or colour, and with `double_precision`/`triple_precision` the
  magnitude in 2/3 bins (the applied sigma or scale normalised over its configured range);
- compression: the quality (JPEG) or QP (H.264) in 2 bins (3 with `triple_precision`);
- blur: the kernel family (7, realesrganblur's list) and sigma_x, sigma_y in 3 bins each.
WeakCon's degradation vector: two values per family (gaussian sigma | poisson scale; JPEG quality
| QP; sigma_x, sigma_y), normalised.

Evaluation: `paired` eval sets with `lr` images (an `hr` is not read) and their
`degradation_metadata` CSV (`rumpy degrade`'s), labelled with the training pipeline's ranges."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import ConfigError, RunConfig
from .cache import ImageStore, choose_mode
from .datasets import ALL_AUGMENTS, augment, to_tensor
from .degrade.kernels import KERNEL_CODES, KERNEL_TYPES
from .images import image_size, list_images
from .loaders import concat_index, eval_loader, random_crop
from .metadata import _ranges, metadata_csv, unlocated

# family -> the operations that give it and the parameters its label reads
FAMILIES = {
    "noise": {"realesrgannoise": ("gaussian_noise_sigma", "poisson_noise_scale", "gray_noise")},
    "compression": {"jpegcompress": ("jpeg_quality",), "ffmpegcompress": ("qpi",)},
    "blur": {"realesrganblur": ("kernel_type", "sigma_x", "sigma_y")},
}
ORDER = ("noise", "compression", "blur")  # the original's decision order


def _bin(value: float, splits: int) -> int:
    if splits == 2:
        return int(value > 0.5)
    return 2 if value > 0.66 else 1 if value > 0.33 else 0


@dataclass
class Labeller:
    """Degradation classes and vectors from the applied parameters. `fields` maps
    'operation-parameter' to its [low, high] (the training pipeline's ranges)."""

    families: list[str]
    strategy: str
    fields: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict) -> "Labeller":
        return cls(list(state["families"]), state["strategy"],
                   {k: list(v) for k, v in state["fields"].items()})

    def state(self) -> dict:
        return {"families": self.families, "strategy": self.strategy, "fields": self.fields}

    def _splits(self) -> int:
        return 3 if self.strategy == "triple_precision" else 2

    def decisions(self) -> list[int]:
        out = []
        for family in self.families:
            if family == "noise":
                out += [2, 2] if self.strategy == "default" else [self._splits(), 2, 2]
            elif family == "compression":
                out += [self._splits()]
            else:
                out += [len(KERNEL_TYPES), 3, 3]
        return out

    @property
    def num_classes(self) -> int:
        return int(np.prod(self.decisions()))

    @property
    def vector_size(self) -> int:
        return 2 * len(self.families)

    def _norm(self, raw: dict, name: str) -> float:
        low, high = self.fields[name]
        value = float(raw[name])
        return min(1.0, max(0.0, (value - low) / (high - low))) if high > low else 0.0

    def _get(self, raw: dict, family: str) -> tuple[str, list[str]]:
        """The operation of `family` this record has, and its field names."""
        for op, keys in FAMILIES[family].items():
            names = [f"{op}-{k}" for k in keys]
            if all(n in raw for n in names):
                return op, names
        raise KeyError(family)

    def label(self, raw: dict) -> int:
        digits = []
        for family in self.families:
            op, names = self._get(raw, family)
            if family == "noise":
                gaussian = float(raw[names[0]]) > 0
                magnitude = self._norm(raw, names[0] if gaussian else names[1])
                grey, kind = int(float(raw[names[2]]) > 0), int(gaussian)
                digits += ([grey, kind] if self.strategy == "default" else
                           [_bin(magnitude, self._splits()), grey, kind])
            elif family == "compression":
                digits.append(_bin(self._norm(raw, names[0]), self._splits()))
            else:
                kind = raw[names[0]]
                code = KERNEL_CODES[kind] if isinstance(kind, str) and kind in KERNEL_CODES \
                    else int(float(kind))
                digits += [code, _bin(self._norm(raw, names[1]), 3),
                           _bin(self._norm(raw, names[2]), 3)]
        label, weight = 0, 1
        for digit, size in zip(digits, self.decisions()):
            label += digit * weight
            weight *= size
        return label

    def vector(self, raw: dict) -> list[float]:
        out = []
        for family in self.families:
            op, names = self._get(raw, family)
            if family == "noise":
                gaussian = float(raw[names[0]]) > 0
                out += [self._norm(raw, names[0]), 0.0] if gaussian else \
                    [0.0, self._norm(raw, names[1])]
            elif family == "compression":
                out += [self._norm(raw, names[0]), 0.0] if op == "jpegcompress" else \
                    [0.0, self._norm(raw, names[0])]
            else:
                out += [self._norm(raw, names[1]), self._norm(raw, names[2])]
        return out


def plan_labels(steps: list, data_type: list[str], strategy: str) -> Labeller:
    """The labeller of a training pipeline; ValueError naming what is missing."""
    families, fields = [], {}
    by_op = {}
    for step in steps:
        by_op.setdefault(step.name, []).append(step)
    for family in ORDER:
        if family not in data_type:
            continue
        present = [op for op in FAMILIES[family] if op in by_op]
        if not present:
            raise ValueError(f"data_type {family!r}: the pipeline has no "
                             f"{' or '.join(FAMILIES[family])} step to label it from")
        if len(present) > 1 or len(by_op[present[0]]) > 1:
            raise ValueError(f"data_type {family!r}: the pipeline has several {family} steps; "
                             f"an image's class needs one")
        op = present[0]
        ranges = by_op[op][0].op.ranges()
        for key in FAMILIES[family][op]:
            low, high = ranges.get(key, (0.0, 1.0))
            fields[f"{op}-{key}"] = [float(low), float(high)]
        families.append(family)
    return Labeller(families, strategy, fields)


def applied_record(steps: list, applied: list[dict]) -> dict:
    """'operation-parameter' -> value of one draw of the pipeline."""
    return {f"{s.name}-{k}": v for s, params in zip(steps, applied) for k, v in params.items()}


class ContrastiveCrops(Dataset):
    """`crops` patches of one image per item, all with one degradation: {"lq": P x 3 x c x c
    uint8, "label": class, "vector": degradation vector}."""

    def __init__(self, sets: list, crop: int, augment: list, repeat: list[int], seed: int,
                 crops: int, labeller: Labeller):
        self.sets, self.crop, self.seed, self.crops = sets, crop, seed, crops
        self.augment = [ALL_AUGMENTS if a is True else (a or None) for a in augment]
        self.labeller = labeller
        self.index = concat_index([len(ds) for ds in sets], repeat)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, idx = key
        s, i = self.index[idx]
        images = self.sets[s]
        rng = np.random.default_rng([self.seed, epoch, idx])
        online = images.online
        applied = online.sample(np.random.default_rng([self.seed, epoch, idx, 1]))
        hr = images.hr[i]
        size = self.crop * images.scale
        patches = []
        for _ in range(self.crops):
            top, left = random_crop(rng, hr.shape[0], hr.shape[1], size)
            patch = hr[top: top + size, left: left + size]
            if self.augment[s]:
                (patch,) = augment((patch,), rng, self.augment[s])
            patches.append(to_tensor(online.apply(np.ascontiguousarray(patch), applied)))
        record = applied_record(online.steps, applied)
        return {"lq": torch.stack(patches),
                "label": torch.tensor(self.labeller.label(record), dtype=torch.long),
                "vector": torch.tensor(self.labeller.vector(record), dtype=torch.float32)}


@dataclass
class EncoderEvalSet:
    """An eval set's LR images and their degradation records ('operation-parameter' -> value)."""

    name: str
    keys: list[str]
    paths: list[Path]
    sizes: list[tuple[int, int]]
    records: list[dict]
    crop: int = 0

    def __len__(self) -> int:
        return len(self.keys)


def check_eval_set(cfg: RunConfig, label: str, ds, labeller: Labeller) -> EncoderEvalSet:
    """LR images (`lr`) and the records of `degradation_metadata`; every problem a ConfigError."""
    src, where = cfg.source, f"data.eval_sets.{label}"
    if not ds.lr or not Path(ds.lr).is_dir():
        raise ConfigError(src, f"{where}.lr", f"folder not found: {ds.lr}" if ds.lr else
                          "missing: give the folder of degraded (LR) images to encode")
    if not ds.degradation_metadata:
        raise ConfigError(src, f"{where}.degradation_metadata",
                          "missing: an encoder is scored by how its embeddings group the "
                          "images' degradation classes; give 'on_site' (the LR folder's "
                          "degradation_metadata.csv) or the CSV's path")
    paths = ds.selected(list_images(Path(ds.lr)))
    if not paths:
        raise ConfigError(src, f"{where}.lr", f"no images (png/jpg/bmp/tif) in {ds.lr}")
    csv_path = metadata_csv(cfg, ds)
    if not csv_path.is_file():
        raise ConfigError(src, f"{where}.degradation_metadata", f"file not found: {csv_path}")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    wanted = {}
    for name in labeller.fields:
        matches = [c for c in columns if unlocated(c) == name]
        if len(matches) != 1:
            why = "no column" if not matches else f"several columns ({', '.join(matches)})"
            raise ConfigError(src, f"{where}.degradation_metadata",
                              f"{why} for {name} in {csv_path}: the encoder's classes "
                              f"({', '.join(labeller.families)}) need it")
        wanted[name] = matches[0]
    by_name = {}
    for row in rows:
        by_name[row["image"]] = row
        by_name.setdefault(Path(row["image"]).stem, row)
    records, sizes = [], []
    for path in paths:
        row = by_name.get(path.name) or by_name.get(path.stem)
        if row is None:
            raise ConfigError(src, f"{where}.degradation_metadata",
                              f"image {path.name} has no row in {csv_path}")
        record = {}
        for name, column in wanted.items():
            value = row[column]
            try:
                record[name] = value if name.endswith("kernel_type") and value in KERNEL_CODES \
                    else float(value)
            except ValueError:
                raise ConfigError(src, f"{where}.degradation_metadata",
                                  f"image {path.name}: {column} is {value!r} in {csv_path}, "
                                  f"not a number") from None
        records.append(record)
        try:
            sizes.append(image_size(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(src, where, f"cannot use image: {exc}") from None
    if len(paths) < 2:
        raise ConfigError(src, f"{where}.lr", "expected at least 2 images (each is scored by its "
                                              "nearest neighbour among the others)")
    return EncoderEvalSet(label, [p.stem for p in paths], paths, sizes, records,
                          getattr(ds, "crop", 0))


class EncoderEvalImages(Dataset):
    def __init__(self, store: ImageStore, crop: int, labels: list[int]):
        self.store, self.crop, self.labels = store, crop, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        lr = self.store[i]
        if self.crop:
            top = max(0, (lr.shape[0] - self.crop) // 2)
            left = max(0, (lr.shape[1] - self.crop) // 2)
            lr = lr[top: top + self.crop, left: left + self.crop]
        return {"lq": to_tensor(lr), "index": i, "label": self.labels[i]}


def eval_loaders(cfg: RunConfig, sets: list[EncoderEvalSet], labeller: Labeller,
                 pin_memory: bool) -> dict:
    loaders = {}
    for s in sets:
        decoded = sum(3 * h * w for h, w in s.sizes)
        store = ImageStore(s.paths, choose_mode(cfg.data.cache, decoded,
                                                cfg.data.cache_memory_limit_gb),
                           Path(cfg.data.cache_dir))
        sizes = [(min(h, s.crop), min(w, s.crop)) if s.crop else (h, w) for h, w in s.sizes]
        labels = [labeller.label(r) for r in s.records]
        loaders[s.name] = eval_loader(EncoderEvalImages(store, s.crop, labels), sizes,
                                      cfg.data.eval_batch_size, pin_memory)
    return loaders


def nearest_neighbour_hits(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image: 1 when its nearest other image (cosine similarity of the embeddings) has its
    class, else 0 (leave-one-out 1-NN)."""
    e = torch.nn.functional.normalize(embeddings.double(), dim=1)
    sim = e @ e.T
    sim.fill_diagonal_(-math.inf)
    return (labels[sim.argmax(1)] == labels).double()
