"""Progress display: tqdm bars for epochs and batches on a terminal; when stderr is not a
terminal (CI, nohup, a pipe), a log line every `interval` seconds instead, so logs stay readable."""
from __future__ import annotations

import logging
import sys
import time

import torch
from tqdm import tqdm

log = logging.getLogger("rumpy.progress")


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, num_epochs: int, start_epoch: int, interval: float = 30.0,
                 terminal: bool | None = None, batch_size: int = 0, where=None):
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.num_epochs = num_epochs
        self.interval = interval
        self.batch_size = batch_size  # the global batch: samples/s over all processes
        # epoch -> 'epoch 3/10' ('step 3000/10000' in a step-based run: config/periods.py)
        self.where = where or (lambda epoch: f"epoch {epoch}/{num_epochs}")
        self._mark = (time.monotonic(), 0)  # (time, batches) where the rate is measured from
        self.epochs = tqdm(total=num_epochs, initial=start_epoch, desc="epochs", position=0,
                           disable=not self.terminal, dynamic_ncols=True)
        self.batches: tqdm | None = None
        self._last_log = time.monotonic()
        self._epoch = start_epoch

    def start_epoch(self, epoch: int, done: int, total_steps: int) -> None:
        self._epoch = epoch
        self._total_steps = total_steps
        self._mark = (time.monotonic(), done)
        self.batches = tqdm(total=total_steps, initial=done, desc=f"epoch {epoch}", position=1,
                            leave=False, disable=not self.terminal, dynamic_ncols=True)

    def step(self, steps: int, loss_sum: torch.Tensor) -> None:
        """After each batch (`steps` of the epoch so far); reads the loss (a device sync) only
        when showing it."""
        if self.terminal:
            self.batches.update(1)
            if steps % 10 == 0:
                rate = self.batches.format_dict.get("rate") or 0.0
                shown = {"loss": f"{loss_sum.item() / steps:.4f}"}
                if self.batch_size and rate:
                    shown["samples/s"] = f"{rate * self.batch_size:.1f}"
                self.batches.set_postfix(shown)
        elif time.monotonic() - self._last_log >= self.interval:
            self._last_log = now = time.monotonic()
            rate = (steps - self._mark[1]) / max(now - self._mark[0], 1e-9)
            left = self._total_steps - steps + (self.num_epochs - self._epoch) * self._total_steps
            samples = f", {rate * self.batch_size:.1f} samples/s" if self.batch_size else ""
            log.info("%s: batch %d/%d, running loss %.5f, %.2f batches/s%s, ETA %s "
                     "(training only)", self.where(self._epoch), steps, self._total_steps,
                     loss_sum.item() / steps, rate, samples,
                     duration(left / rate) if rate > 0 else "?")

    def end_epoch(self, row: dict) -> None:
        if self.batches is not None:
            self.batches.close()
        self.epochs.update(1)
        shown = {k[len("val-"):]: f"{v:.4f}" for k, v in row.items()
                 if k.startswith("val-") and isinstance(v, float)}
        if shown:
            self.epochs.set_postfix(shown)

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()
        self.epochs.close()
