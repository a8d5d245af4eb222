"""Checkpoint retention: prune a node's epoch checkpoints and weights snapshots by policy, never
the best, the newest, the keep_last_n newest, or one a branch was forked from (including one
being forked right now: see tree_lock). last.pt and best.pt are never pruned: when they are hard
links to a pruned epoch file, they keep its data."""
from __future__ import annotations

import logging

from .lock import tree_lock
from .node import Node

log = logging.getLogger(__name__)


def prune_checkpoints(node: Node, keep_every: int, keep_last: int,
                      best_epoch: int | None) -> list[int]:
    """keep_every 1 keeps everything; N > 1 keeps multiples of N; 0 keeps only the protected
    ones. Returns the epochs whose files were removed."""
    if keep_every == 1:
        return []
    # Under the tree lock a fork being created is either in place, so referenced_epochs() sees
    # its fork epoch, or has yet to check that its fork checkpoint exists.
    with tree_lock(node.root):
        removed = set()
        for files in (node.own_checkpoints(), node.own_snapshots()):
            if not files:
                continue
            newest = sorted(files)[-keep_last:] if keep_last else []
            protected = {max(files), best_epoch, *newest} | node.referenced_epochs()
            for epoch, path in files.items():
                if epoch in protected or (keep_every > 1 and epoch % keep_every == 0):
                    continue
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".sha256").unlink(missing_ok=True)
                removed.add(epoch)
    if removed:
        log.debug("retention removed checkpoints of epochs %s", sorted(removed))
    return sorted(removed)
