"""Checkpoint retention: prune a node's epoch checkpoints by policy, never the best, the last,
or one a branch was forked from (including one being forked right now: see tree_lock)."""
from __future__ import annotations

import logging

from .lock import tree_lock
from .node import Node

log = logging.getLogger(__name__)


def prune_checkpoints(node: Node, keep_every: int, best_epoch: int | None) -> list[int]:
    """keep_every 1 keeps everything; N > 1 keeps multiples of N; 0 keeps only the protected
    ones. Returns the epochs removed."""
    if keep_every == 1:
        return []
    # Under the tree lock a fork being created is either in place, so referenced_epochs() sees
    # its fork epoch, or has yet to check that its fork checkpoint exists.
    with tree_lock(node.root):
        own = node.own_checkpoints()
        if not own:
            return []
        protected = {max(own), best_epoch} | node.referenced_epochs()
        removed = []
        for epoch, path in own.items():
            if epoch in protected or (keep_every > 1 and epoch % keep_every == 0):
                continue
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".sha256").unlink(missing_ok=True)
            removed.append(epoch)
    if removed:
        log.debug("retention removed checkpoints of epochs %s", removed)
    return removed
