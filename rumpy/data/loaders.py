"""DataLoaders every task shares: a training loader whose order is a function of (seed, epoch)
and whose samples are drawn from (seed, epoch, index), so any worker count and any resume point
give the same batches; and deterministic evaluation loaders."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import RunConfig


PR_SET_PDEATHSIG = 1  # linux/prctl.h


class EpochSampler(Sampler):
    """Shuffled order that is a function of (seed, epoch) alone; yields (epoch, index) keys, so
    a dataset can seed a sample's randomness (crop, flips) by (seed, epoch, index)."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 1
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch to draw, skipping its first `start` samples (resuming mid-epoch)."""
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        return iter([(self.epoch, int(i)) for i in order[self.start:]])

    def __len__(self) -> int:
        return self.size - self.start


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


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process the moment its parent dies. torch's own watchdog
    notices a dead parent only while the worker waits for work (every 5 s), not while it is
    blocked elsewhere; ignoring SIGTERM (below), such an orphan would live on. Elsewhere: a
    thread that watches."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        ok = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        ok = False
    if not ok:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the request above
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _worker_init(parent: int, _worker_id: int) -> None:
    # Ctrl+C and a scheduler's SIGTERM reach the whole process group; the main process finishes
    # its step and saves, which needs the workers alive. The main process stops its workers
    # through their queues, so they never need these signals; they die with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent)


@dataclass
class Loaders:
    train: DataLoader
    sampler: EpochSampler
    evals: dict[str, DataLoader]


def train_loader(cfg: RunConfig, dataset: Dataset, pin_memory: bool) -> tuple[DataLoader, EpochSampler]:
    sampler = EpochSampler(len(dataset), cfg.training.seed)
    workers = cfg.data.dataloader_threads
    batch = cfg.data.batch_size
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        drop_last=True, pin_memory=pin_memory,
                        persistent_workers=workers > 0,
                        worker_init_fn=functools.partial(_worker_init, os.getpid()),
                        # its own generator: loading never draws from the global RNG
                        generator=torch.Generator().manual_seed(cfg.training.seed))
    return loader, sampler


def eval_loader(dataset: Dataset, sizes: list, batch_size: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_sampler=eval_batches(sizes, batch_size), num_workers=0,
                      pin_memory=pin_memory)
