"""What an epoch leaves in saved_models/ (docs/result_tree.md, "Checkpoints and disk use"):

- epoch_N.pt, a full checkpoint, every save_checkpoint_frequency epochs and at the last epoch;
- last.pt, always the newest epoch, so a continue is exact whatever the frequency;
- best.pt at a new best of best_load_metric, at most once per save_best_cooldown epochs;
- weights_N.pt (model and task state, no optimizer) between full checkpoints when
  weights_snapshots is on, so every epoch stays a fork point at a third of the disk.

last.pt and best.pt are hard links to the epoch's own file when it has one, so they cost no
disk; each file gets its checksum sidecar first, as every checkpoint does.

On CUDA the files are written from a copy by a background thread (training/background.py);
on the CPU, where the copy would cost about what it saves, they are written right away."""
from __future__ import annotations

from pathlib import Path

from ..tree.node import BEST, LAST, pointer_epoch
from ..core.checkpoint import link_checkpoint, save_checkpoint
from .background import BackgroundSaver, snapshot

# Devices whose checkpoints are written in the background (tests add "cpu" to run that path).
BACKGROUND_DEVICES = ("cuda",)


class CheckpointWriter:
    def __init__(self, run):
        self.best_saved = pointer_epoch(run.folder.models / BEST, run.node.own_checkpoints())
        self.saver = BackgroundSaver() if run.device.type in BACKGROUND_DEVICES else None
        run.saver = self.saver

    def save(self, run, epoch: int, row: dict) -> None:
        t, models = run.cfg.training, run.folder.models
        full = epoch % t.save_checkpoint_frequency == 0 or epoch == t.num_epochs
        state = run.checkpoint(epoch, summary_row=dict(row))
        weights = None
        if not full and t.weights_snapshots:
            weights = run.checkpoint(epoch, summary_row=dict(row), weights_only=True)
        best = run.best.best_epoch == epoch and (self.best_saved is None or
                                                 epoch - self.best_saved >= t.save_best_cooldown)
        if best:
            self.best_saved = epoch
        path = run.folder.checkpoint(epoch) if full else models / LAST
        if self.saver is None:
            _write(models, path, full, state, weights, epoch, best)
        else:
            self.saver.submit(_write, models, path, full, snapshot(state), snapshot(weights),
                              epoch, best)


def _write(models: Path, path: Path, full: bool, state: dict, weights: dict | None, epoch: int,
           best: bool) -> None:
    digest = save_checkpoint(path, state)
    if full:
        link_checkpoint(path, models / LAST, digest)
    elif weights is not None:
        save_checkpoint(models / f"weights_{epoch}.pt", weights)
    if best:
        link_checkpoint(path, models / BEST, digest)
