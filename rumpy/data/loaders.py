"""DataLoaders every task shares: a training loader whose order is a function of (seed, epoch)
and whose samples are drawn from (seed, epoch, index), so any worker count and any resume point
give the same batches; and deterministic evaluation loaders."""
from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import signal
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..config import RunConfig
from ..utils.process import die_with_parent


class EpochSampler(Sampler):
    """Shuffled order that is a function of (seed, epoch) alone; yields (epoch, index) keys, so
    a dataset can seed a sample's randomness (crop, flips) by (seed, epoch, index)."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 1
        self.start = 0
        self.rank, self.world, self.batch = 0, 1, 1
        self.period = 0  # global batches per epoch of a step-based run; 0: epochs are passes

    def shard(self, rank: int, world: int, batch: int) -> None:
        """Data parallel: this rank's slice of every global batch of `batch` samples (a global
        batch is split into `world` consecutive slices), so N processes together see exactly
        the one-process batches. An incomplete last global batch is dropped."""
        self.rank, self.world, self.batch = rank, world, batch

    def stream(self, period: int, batch: int) -> None:
        """A step-based run: `epoch` k is the k-th period of `period` global batches of `batch`
        samples in a stream that runs through the data passes back to back (pass e in its
        (seed, e) order, size // batch whole batches each), so a period may end mid-pass and
        its position is a function of k alone."""
        if self.size // batch:
            self.period, self.batch = period, batch
        else:
            raise ValueError(f"{self.size} training samples make no batch of {batch}")

    def passes(self, epoch: int) -> float:
        """Data passes a step-based run has made by the end of `epoch` (a period)."""
        return epoch * self.period / (self.size // self.batch)

    def _stream(self) -> Iterator[tuple[int, int]]:
        per_pass, part = self.size // self.batch, self.batch // self.world
        order, drawn = None, 0
        for g in range(*self._span()):
            data_epoch = g // per_pass + 1
            if data_epoch != drawn:
                order = np.random.default_rng([self.seed, data_epoch]).permutation(self.size)
                drawn = data_epoch
            first = (g % per_pass) * self.batch + self.rank * part
            yield from ((data_epoch, int(order[p])) for p in range(first, first + part))

    def _span(self) -> tuple[int, int]:
        return ((self.epoch - 1) * self.period + self.start // self.batch,
                self.epoch * self.period)

    def _positions(self) -> range | list[int]:
        if self.world == 1:
            return range(self.start, self.size)
        full = self.size // self.batch * self.batch
        part = self.batch // self.world
        return [p for p in range(self.start, full) if (p % self.batch) // part == self.rank]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch to draw, skipping its first `start` samples (resuming mid-epoch)."""
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.period:
            return self._stream()
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        return iter([(self.epoch, int(order[p])) for p in self._positions()])

    def __len__(self) -> int:
        if self.period:
            first, end = self._span()
            return (end - first) * (self.batch // self.world)
        return len(self._positions())


def concat_index(lengths: list[int], repeat: list[int]) -> list[tuple[int, int]]:
    """(set, item) for every item of several sets, each set `repeat` times: the sample order a
    training dataset over concatenated sets indexes into."""
    return [(s, i) for s, (n, rep) in enumerate(zip(lengths, repeat)) for _ in range(rep)
            for i in range(n)]


def random_crop(rng: np.random.Generator, height: int, width: int, crop: int) -> tuple[int, int]:
    """(top, left) of a crop x crop window drawn from `rng`."""
    return int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))


def eval_batches(sizes: list, batch_size: int) -> list[list[int]]:
    """Batches of indices in order, only equal-sized samples together."""
    batches: list[list[int]] = []
    for i, size in enumerate(sizes):
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and sizes[last[0]] == size:
            last.append(i)
        else:
            batches.append([i])
    return batches


def _worker_init(parent: int, _worker_id: int) -> None:
    # Ctrl+C and a scheduler's SIGTERM reach the whole process group; the main process finishes
    # its step and saves, which needs the workers alive. The main process stops its workers
    # through their queues, so they never need these signals; they die with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # torch's own watchdog notices a dead parent only while the worker waits for work; ignoring
    # SIGTERM, an orphan blocked elsewhere would live on: the kernel kills it instead.
    die_with_parent(signal.SIGKILL, parent)


def _kill_leftover_workers() -> None:
    # At interpreter exit multiprocessing stops daemonic children with SIGTERM and then joins
    # them: a worker kept alive (persistent workers of a loader never closed) ignores SIGTERM,
    # so that join would wait forever. Registered after multiprocessing's handler, this runs
    # first; the non-daemonic output worker is left to its own drain.
    leftover = [c for c in multiprocessing.active_children() if c.daemon]
    if not leftover:
        return
    try:  # torch's SIGCHLD handler would report the killed workers as a failure
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except ValueError:  # not the main thread
        pass
    for child in leftover:
        child.kill()
        child.join(timeout=5)


atexit.register(_kill_leftover_workers)


@dataclass
class Loaders:
    train: DataLoader
    sampler: EpochSampler
    evals: dict[str, DataLoader]


def train_loader(cfg: RunConfig, dataset: Dataset, pin_memory: bool) -> tuple[DataLoader, EpochSampler]:
    sampler = EpochSampler(len(dataset), cfg.training.seed)
    workers = cfg.data.dataloader_threads
    batch = cfg.data.batch_size
    several = getattr(dataset, "request_crops", 1) > 1
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        drop_last=cfg.data.drop_last_training_batch, pin_memory=pin_memory,
                        collate_fn=flatten_crops if several else None,
                        persistent_workers=workers > 0,
                        worker_init_fn=functools.partial(_worker_init, os.getpid()),
                        # its own generator: loading never draws from the global RNG
                        generator=torch.Generator().manual_seed(cfg.training.seed))
    return loader, sampler


def shard_train_loader(loaders: "Loaders", rank: int, world: int, batch: int) -> None:
    """The training loader of one data-parallel rank: its slice (batch / world samples) of each
    global batch, same workers and settings."""
    old = loaders.train
    loaders.sampler.shard(rank, world, batch)
    loaders.train = DataLoader(old.dataset, batch_size=batch // world, sampler=loaders.sampler,
                               num_workers=old.num_workers, drop_last=old.drop_last,
                               collate_fn=old.collate_fn,
                               pin_memory=old.pin_memory,
                               persistent_workers=old.num_workers > 0,
                               worker_init_fn=old.worker_init_fn, generator=old.generator)


def flatten_crops(samples: list[dict]) -> dict:
    """`request_crops` patches per image: B items of P patches become one batch of B x P."""
    batch = default_collate(samples)
    return {k: v.flatten(0, 1) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def eval_loader(dataset: Dataset, sizes: list, batch_size: int, pin_memory: bool) -> DataLoader:
    # its own generator: each pass would otherwise draw a seed from the global RNG, and the
    # passes a continue makes (baseline, validation) would shift the training's random stream
    return DataLoader(dataset, batch_sampler=eval_batches(sizes, batch_size), num_workers=0,
                      pin_memory=pin_memory, generator=torch.Generator())
