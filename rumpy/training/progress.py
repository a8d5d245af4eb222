"""Progress display: tqdm bars for epochs and batches on a terminal; when stderr is not a
terminal (CI, nohup, a pipe), a log line every `interval` seconds instead, so logs stay readable."""
from __future__ import annotations

import logging
import sys
import time

import torch
from tqdm import tqdm

log = logging.getLogger("rumpy.progress")


class Progress:
    def __init__(self, num_epochs: int, start_epoch: int, interval: float = 30.0,
                 terminal: bool | None = None):
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.num_epochs = num_epochs
        self.interval = interval
        self.epochs = tqdm(total=num_epochs, initial=start_epoch, desc="epochs", position=0,
                           disable=not self.terminal, dynamic_ncols=True)
        self.batches: tqdm | None = None
        self._last_log = time.monotonic()
        self._epoch = start_epoch

    def start_epoch(self, epoch: int, done: int, total_steps: int) -> None:
        self._epoch = epoch
        self._total_steps = total_steps
        self.batches = tqdm(total=total_steps, initial=done, desc=f"epoch {epoch}", position=1,
                            leave=False, disable=not self.terminal, dynamic_ncols=True)

    def step(self, steps: int, loss_sum: torch.Tensor) -> None:
        """After each optimizer step; reads the loss (a device sync) only when showing it."""
        if self.terminal:
            self.batches.update(1)
            if steps % 10 == 0:
                self.batches.set_postfix(loss=f"{loss_sum.item() / steps:.4f}")
        elif time.monotonic() - self._last_log >= self.interval:
            self._last_log = time.monotonic()
            log.info("epoch %d/%d: step %d/%d, running loss %.5f", self._epoch, self.num_epochs,
                     steps, self._total_steps, loss_sum.item() / steps)

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
