"""Checkpoint retention: prune a node's epoch checkpoints and weights snapshots by policy, never
the best, the newest, the keep_last_n newest, or one a branch was forked from (including one
being forked right now: see tree_lock). last.pt and best.pt are never pruned: when they are hard
links to a pruned epoch file, they keep its data. Used live after every epoch (the Retention
callback) and after the fact by `rumpy clean` (cli/clean.py), which also protects the epochs
last.pt and best.pt hold and can only list what it would remove."""
from __future__ import annotations

import logging
from pathlib import Path

from .lock import tree_lock
from .node import Node

log = logging.getLogger(__name__)


def _doomed(node: Node, keep_every: int, keep_last: int, protect: set) -> dict[Path, int]:
    """{file: epoch} the policy removes (checkpoint files only; sidecars go with them)."""
    out = {}
    for files in (node.own_checkpoints(), node.own_snapshots()):
        if not files:
            continue
        newest = sorted(files)[-keep_last:] if keep_last else []
        protected = {max(files), *newest} | protect | node.referenced_epochs()
        for epoch, path in files.items():
            if epoch in protected or (keep_every > 1 and epoch % keep_every == 0):
                continue
            out[path] = epoch
    return out


def _freed(path: Path) -> int:
    """Bytes that removing `path` gives back: none while a hard link (last.pt, best.pt) keeps
    its data."""
    try:
        st = path.stat()
    except OSError:
        return 0
    return st.st_size if st.st_nlink == 1 else 0


def prune_checkpoints(node: Node, keep_every: int, keep_last: int, best_epoch: int | None,
                      protect: set | None = None, dry_run: bool = False
                      ) -> tuple[list[int], int]:
    """keep_every 1 keeps everything; N > 1 keeps multiples of N; 0 keeps only the protected
    ones. `protect`: more epochs to keep. Returns the epochs whose files were removed (or would
    be, with dry_run) and the bytes that freed."""
    if keep_every == 1:
        return [], 0
    # Under the tree lock a fork being created is either in place, so referenced_epochs() sees
    # its fork epoch, or has yet to check that its fork checkpoint exists.
    with tree_lock(node.root):
        doomed = _doomed(node, keep_every, keep_last, {best_epoch, *(protect or ())})
        freed = 0
        for path in doomed:
            sidecar = path.with_name(path.name + ".sha256")
            freed += _freed(path) + _freed(sidecar)
            if not dry_run:
                path.unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
    removed = sorted(set(doomed.values()))
    if removed and not dry_run:
        log.debug("retention removed checkpoints of epochs %s", removed)
    return removed, freed
