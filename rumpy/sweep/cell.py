"""Training one cell of a sweep (a grid cell, or one seed of a search trial) from whatever state
its node is in, so that running the sweep again always gets it to the end:

    new        no folder: start it
    continue   an interrupted or crashed node with a saved epoch: continue it exactly from its
               last checkpoint (`continue_from_epoch = "last"`)
    restart    a node killed during its start-up (its folder made, no epoch saved): started
               again with overwrite_data, which sets the half-made folder aside and removes it
               only once the new run has its first checkpoint (and only if rumpy made it)
    finish     a node whose checkpoints reach num_epochs but whose status says crashed (it died
               after its last save): marked finished, its missing summary rows rebuilt from the
               checkpoints, nothing trained
"""
from __future__ import annotations

import logging

from ..config import RunConfig
from ..tree.node import INTERRUPTED, Node

log = logging.getLogger(__name__)


def resume_mode(node: Node, num_epochs: int) -> str:
    """'new', 'continue', 'restart' or 'finish' for a node that is not running or done."""
    if not node.exists():
        return "new"
    own = node.own_saved()
    if not own and not (node.folder.models / INTERRUPTED).is_file():
        return "continue" if node.rel else "restart"  # a branch goes on from its fork point
    if node.state() == "crashed" and max(own, default=0) >= num_epochs:
        return "finish"
    return "continue"


def _rows_on_disk(node: Node) -> int:
    import csv
    try:
        with open(node.folder.summary, newline="") as f:
            return sum(1 for row in csv.DictReader(f) if row.get("epoch"))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0


def finish(node: Node) -> None:
    """A complete node the status calls crashed: its rows up to the last checkpoint, and
    state finished."""
    from ..core.summary import write_table
    from ..core.checkpoint import CorruptCheckpoint, load_checkpoint
    from ..tree.plan import _rows_until

    epoch, path = max(node.own_saved().items())
    try:
        state = load_checkpoint(path)
    except CorruptCheckpoint as exc:
        log.warning("%s; the node stays as it is", exc)
        return
    if _rows_on_disk(node) < epoch:  # node.summary() would show them rebuilt, not write them
        rows = _rows_until(node, epoch, state)
        columns = list(dict.fromkeys(c for r in rows for c in r))
        write_table(node.folder.summary, rows, columns)
    node.set_status(state="finished", epochs_done=epoch, error=None)
    log.info("%s: every epoch was saved before it crashed; marked finished", node.path)


def train_node(cfg: RunConfig, node: Node, mode: str, callbacks: list | None = None,
               announce: str = "") -> tuple[str, bool]:
    """Trains the node from `mode` (resume_mode). Returns (final state, stop requested).
    `announce` is logged once the node is claimed (a worker refused here never says it)."""
    from ..logs import attach_file, detach_file
    from ..training.callbacks import default_callbacks, early_output_worker
    from ..training.setup import prepare, start
    from ..training.trainer import train

    if mode == "finish":
        if announce:
            log.info("%s", announce)
        finish(node)
        return "finished", False
    if mode == "continue":
        cfg.training.continue_from_epoch = "last"
        if node.rel:
            cfg.training.branch_root = node.rel
    elif mode == "restart":
        log.warning("%s was killed during its start-up (no epoch saved): starting it again",
                    node.path)
        cfg.training.overwrite_data = True
    outputs = early_output_worker(cfg)  # its imports run beside the set-up
    try:
        run = prepare(cfg)
        start(run)  # claims the node: a second worker is refused here
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    if announce:
        log.info("%s", announce)
    handler = attach_file(run.folder.log)
    try:
        return train(run, default_callbacks(outputs) + list(callbacks or [])), \
            run.stop_requested
    finally:
        detach_file(handler)
