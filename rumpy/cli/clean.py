"""`rumpy clean NODE`: checkpoint retention after the fact (the original tool's `clean_models`),
by the same policy and code as the live retention (tree/retention.py). Never removes the best
epoch, the newest, the epochs last.pt and best.pt hold, or any epoch a branch (at any depth) was
forked from. Refused while the node is being trained; holds its lock while it removes."""
from __future__ import annotations

import argparse
import logging

from .args import non_negative

log = logging.getLogger("rumpy")


def _size(nbytes: int) -> str:
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= factor:
            return f"{nbytes / factor:.1f} {unit}"
    return f"{nbytes} bytes"


def _protected(node, training: dict) -> set:
    """The best epoch (by the node's best_load_metric, and as status.json recorded it) and the
    epochs last.pt and best.pt hold."""
    from ..tree.node import BEST, LAST, pointer_epoch
    from ..tree.plan import best_saved_epoch

    out = set()
    try:
        out.add(best_saved_epoch(node, training.get("best_load_metric") or "val-PSNR")[0])
    except ValueError:  # a metric without a direction: status.json's best still counts
        pass
    best = node.status.get("best")
    if isinstance(best, dict) and isinstance(best.get("epoch"), int):
        out.add(best["epoch"])
    for name in (LAST, BEST):
        out.add(pointer_epoch(node.folder.models / name, node.own_checkpoints()))
    return out - {None}


def clean(args: argparse.Namespace) -> int:
    from ..config.compose import read_toml
    from ..core.errors import InferenceError
    from ..tree.find import find_node
    from ..tree.lock import NodeLock, NodeLockedError, check_unlocked
    from ..tree.node import DamagedNode
    from ..tree.retention import prune_checkpoints

    try:
        node = find_node(args.node)
        training = read_toml(node.folder.config).get("training", {})
    except (InferenceError, OSError, ValueError) as exc:
        log.error("rumpy clean: %s", exc)
        return 2
    keep_every = args.keep_every if args.keep_every is not None else \
        training.get("keep_every_n_epochs", 10)
    keep_last = args.keep_last if args.keep_last is not None else training.get("keep_last_n", 3)
    lock = NodeLock(node.path)
    try:
        if args.dry_run:
            check_unlocked(node.path)
        else:
            lock.acquire()  # no training can start on the node while its files go
        removed, freed = prune_checkpoints(node, keep_every, keep_last, None,
                                           protect=_protected(node, training),
                                           dry_run=args.dry_run)
    except (NodeLockedError, DamagedNode) as exc:
        log.error("rumpy clean: %s", exc)
        return 2
    finally:
        lock.release()
    policy = f"keep every {keep_every}, the {keep_last} newest, best, last and fork points"
    if not removed:
        log.info("%s: nothing to remove (%s)", node.path, policy)
        return 0
    verb = "would remove" if args.dry_run else "removed"
    log.info("%s: %s the checkpoints of epochs %s (%s); %s %s", node.path, verb,
             ", ".join(map(str, removed)), policy, "would free" if args.dry_run else "freed",
             _size(freed))
    return 0


def add_parsers(sub) -> None:
    cl = sub.add_parser("clean", help="remove a node's epoch checkpoints by a retention policy "
                                      "(never best, last or fork points)")
    cl.add_argument("node", help="a run folder (Results/<experiment>) or a branch folder in it")
    cl.add_argument("--keep-every", type=non_negative, metavar="N",
                    help="keep every N-th epoch; 0 keeps only the protected ones (default: the "
                         "node's training.keep_every_n_epochs)")
    cl.add_argument("--keep-last", type=non_negative, metavar="N",
                    help="also keep the N newest (default: the node's training.keep_last_n)")
    cl.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    cl.set_defaults(func=clean)
