"""Batches onto the device without stalling the training stream.

On CUDA the host-to-device copy of batch i+1 is issued on a side stream while step i computes:
the loader gives pinned uint8 tensors (a quarter of float32's bytes; conversion to float happens
on the device, in the task), copied with non_blocking=True. Before a batch is handed out, the
compute stream waits for the side stream (so the step never reads a half-copied tensor), and
every tensor of the batch is `record_stream`ed on the compute stream: the caching allocator
then does not give its memory back to the side stream while the step may still read it.

The stream operations go through a small `Streams` object, so the ordering logic runs (and is
tested) on the CPU with a fake one."""
from __future__ import annotations

from typing import Iterable, Iterator

import torch


def place(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """The batch's tensors on `device` (non-blocking from pinned memory); image batches (4-D)
    in channels-last memory when the model is."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


class CudaStreams:
    """The real streams: a side stream for copies and the device's current (compute) stream."""

    def __init__(self, device: torch.device):
        self.device = device
        self.side = torch.cuda.Stream(device)

    def copying(self):
        """Context in which work is issued on the side stream."""
        return torch.cuda.stream(self.side)

    def wait_for_copies(self) -> None:
        torch.cuda.current_stream(self.device).wait_stream(self.side)

    def record(self, tensor: torch.Tensor) -> None:
        tensor.record_stream(torch.cuda.current_stream(self.device))


class Prefetcher:
    """Iterates `loader` one batch ahead, yielding batches already on the device. Without
    `streams` on a CPU device it is a plain `place` of each batch."""

    def __init__(self, loader: Iterable, device: torch.device, channels_last: bool = False,
                 streams=None):
        self.loader = loader
        self.device = device
        self.channels_last = channels_last
        if streams is None and device.type == "cuda":
            streams = CudaStreams(device)
        self.streams = streams

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        batches = iter(self.loader)
        if self.streams is None:
            for batch in batches:
                yield place(batch, self.device, self.channels_last)
            return
        pending = self._issue(batches)
        while pending is not None:
            self.streams.wait_for_copies()
            batch = pending
            for value in batch.values():
                if isinstance(value, torch.Tensor):
                    self.streams.record(value)
            # the next copy goes out before this batch's step is queued: it overlaps the step
            pending = self._issue(batches)
            yield batch

    def _issue(self, batches: Iterator) -> dict | None:
        try:
            batch = next(batches)
        except StopIteration:
            return None
        with self.streams.copying():
            return place(batch, self.device, self.channels_last)
