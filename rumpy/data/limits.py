"""Development modes' loaders: the first N batches of each epoch (`limit_train_batches`), and one
fixed batch trained over and over (`overfit`). Both look like the loader they wrap (its dataset,
sampler, batch size), so the rest of the run does not know the difference."""
from __future__ import annotations

import itertools


class LimitedLoader:
    def __init__(self, loader, limit: int):
        self.loader = loader
        self.limit = limit

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.limit)

    def __len__(self) -> int:
        return min(len(self.loader), self.limit)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class OneBatch:
    """`batch` at every step, as many steps per epoch as the wrapped loader has."""

    def __init__(self, loader, batch: dict):
        self.loader = loader
        self.batch = batch

    def __iter__(self):
        return itertools.repeat(self.batch, len(self))

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)
