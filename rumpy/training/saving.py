"""What an epoch leaves in saved_models/ (docs/result_tree.md, "Checkpoints and disk use"):

- epoch_N.pt, a full checkpoint, every save_checkpoint_frequency epochs and at the last epoch;
- last.pt, always the newest epoch, so a continue is exact whatever the frequency;
- best.pt at a new best of best_load_metric, at most once per save_best_cooldown epochs;
- weights_N.pt (model and task state, no optimizer) between full checkpoints when
  weights_snapshots is on, so every epoch stays a fork point at a third of the disk.

last.pt and best.pt are hard links to the epoch's own file when it has one, so they cost no
disk; each file gets its checksum sidecar first, as every checkpoint does."""
from __future__ import annotations

from ..tree.node import BEST, LAST, pointer_epoch
from ..core.checkpoint import link_checkpoint, save_checkpoint


class CheckpointWriter:
    def __init__(self, run):
        self.best_saved = pointer_epoch(run.folder.models / BEST, run.node.own_checkpoints())

    def save(self, run, epoch: int, row: dict) -> None:
        t, models = run.cfg.training, run.folder.models
        if epoch % t.save_checkpoint_frequency == 0 or epoch == t.num_epochs:
            path = run.folder.checkpoint(epoch)
            digest = save_checkpoint(path, run.checkpoint(epoch, summary_row=dict(row)))
            link_checkpoint(path, models / LAST, digest)
        else:
            path = models / LAST
            digest = save_checkpoint(path, run.checkpoint(epoch, summary_row=dict(row)))
            if t.weights_snapshots:
                save_checkpoint(models / f"weights_{epoch}.pt",
                                run.checkpoint(epoch, summary_row=dict(row), weights_only=True))
        if run.best.best_epoch == epoch and (self.best_saved is None or
                                             epoch - self.best_saved >= t.save_best_cooldown):
            link_checkpoint(path, models / BEST, digest)
            self.best_saved = epoch
