"""The CUDA batch prefetcher's ordering, run on the CPU with a stream object that records what
the real one would be asked to do."""
from __future__ import annotations

import contextlib

import torch

from rumpy.training.prefetch import Prefetcher, place


class FakeStreams:
    """Logs the stream operations; `copying` marks what was placed while the side stream was
    current."""

    def __init__(self, log: list):
        self.log = log
        self.side_active = False

    @contextlib.contextmanager
    def copying(self):
        self.side_active = True
        self.log.append("copy-start")
        try:
            yield
        finally:
            self.side_active = False
            self.log.append("copy-end")

    def wait_for_copies(self):
        self.log.append("wait")

    def record(self, tensor):
        self.log.append(("record", int(tensor.flatten()[0])))


class Loader:
    def __init__(self, n: int, log: list):
        self.n, self.log = n, log

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            self.log.append(("load", i))
            yield {"lr": torch.full((1, 3, 2, 2), i, dtype=torch.uint8), "index": [i]}


def test_batches_come_in_order_and_unchanged():
    log: list = []
    out = list(Prefetcher(Loader(4, log), torch.device("cpu"), streams=FakeStreams(log)))
    assert [int(b["lr"][0, 0, 0, 0]) for b in out] == [0, 1, 2, 3]
    assert all(b["lr"].dtype == torch.uint8 for b in out)  # converted on the device, later
    assert [b["index"] for b in out] == [[0], [1], [2], [3]]


def test_the_next_copy_is_issued_before_a_batch_is_handed_out():
    log: list = []
    batches = iter(Prefetcher(Loader(3, log), torch.device("cpu"), streams=FakeStreams(log)))
    first = next(batches)
    # batch 0 copied on the side stream, waited for, recorded on the compute stream; batch 1's
    # copy already issued before batch 0's step can be queued
    assert log == [("load", 0), "copy-start", "copy-end", "wait", ("record", 0),
                   ("load", 1), "copy-start", "copy-end"]
    assert int(first["lr"].flatten()[0]) == 0
    log.clear()
    next(batches)
    assert log == ["wait", ("record", 1), ("load", 2), "copy-start", "copy-end"]
    log.clear()
    next(batches)
    assert log == ["wait", ("record", 2)]  # nothing left to prefetch
    assert next(batches, None) is None


def test_every_tensor_of_a_batch_is_recorded_and_waited_for_first():
    log: list = []

    class Two(Loader):
        def __iter__(self):
            for i in range(self.n):
                yield {"lr": torch.full((2,), i), "hr": torch.full((2,), 10 + i), "name": "x"}
    list(Prefetcher(Two(2, log), torch.device("cpu"), streams=FakeStreams(log)))
    waits = [i for i, e in enumerate(log) if e == "wait"]
    records = [(i, e) for i, e in enumerate(log) if isinstance(e, tuple) and e[0] == "record"]
    assert [e[1] for _, e in records] == [0, 10, 1, 11]
    # each batch's records follow its wait
    assert waits[0] < records[0][0] < records[1][0] < waits[1] < records[2][0]


def test_without_streams_it_is_a_plain_placement_one_batch_at_a_time():
    log: list = []
    batches = iter(Prefetcher(Loader(2, log), torch.device("cpu")))
    next(batches)
    assert log == [("load", 0)]  # no look-ahead on the CPU: nothing changes there


def test_channels_last_applies_to_image_batches_only():
    batch = place({"lr": torch.zeros(2, 3, 4, 5), "meta": torch.zeros(2, 3)},
                  torch.device("cpu"), channels_last=True)
    assert batch["lr"].is_contiguous(memory_format=torch.channels_last)
    assert batch["meta"].is_contiguous()
