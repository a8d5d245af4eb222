"""The writes of a plan (tree/plan.py): setting damaged or replaced data aside, creating the
run folder or the branch (built aside and renamed into place), and undoing a start-up that
stopped before the first checkpoint."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ..config import ConfigError, RunConfig
from ..config.load import config_text
from ..core.run_folder import RunFolder
from ..core.checkpoint import link_checkpoint
from ..utils.atomic import atomic_write_text
from .lock import tree_lock
from .node import LINEAGE, Node, write_json
from .plan import Plan, TreeError

log = logging.getLogger(__name__)


def finish_replacement(plan: Plan) -> None:
    """The new run has a checkpoint: the run it replaced goes."""
    if plan.replaced is not None and plan.replaced.exists():
        shutil.rmtree(plan.replaced.parent)
        log.info("overwrite_data: removed the replaced run")
    plan.replaced = None


def undo_creation(plan: Plan) -> None:
    """Start-up was interrupted (Ctrl+C) or failed after this process made the node's folder and
    before it trained an epoch: remove that folder again, and put back a run it replaced."""
    if plan.created and plan.node.path.exists() and not plan.node.own_saved():
        shutil.rmtree(plan.node.path)
        plan.created = False
    restore_replaced(plan)


def restore_replaced(plan: Plan) -> None:
    """The new run failed before its first checkpoint: put the replaced run back."""
    if plan.replaced is None or not plan.replaced.exists():
        return
    if plan.node.path.exists():
        shutil.rmtree(plan.node.path)  # the new run's folder, made by this process
    plan.replaced.rename(plan.node.path)
    plan.replaced.parent.rmdir()
    log.warning("overwrite_data: the new run stopped before its first checkpoint; the previous "
                "run is back in %s", plan.node.path)
    plan.replaced = None


def _materialise(pointer: Path, target: Path, sha: str) -> None:
    """The fork point held only by last.pt or best.pt becomes epoch_N.pt (a hard link), which
    retention keeps for the branch; if the pointer moved on meanwhile, the fork is refused
    below (its checksum no longer matches)."""
    try:
        current = pointer.with_name(pointer.name + ".sha256").read_text().split()[0]
    except (OSError, IndexError):
        return
    if current == sha:
        link_checkpoint(pointer, target, sha)
        log.info("the fork point %s is kept as %s", pointer, target.name)


def apply_plan(plan: Plan, cfg: RunConfig) -> None:
    """The plan's writes, in an order that leaves a consistent tree if interrupted."""
    node = plan.node
    for path in plan.set_aside:
        path.rename(path.with_name(path.name + ".corrupt"))
        log.warning("moved the unusable %s aside (.corrupt)", path)
    if plan.remove_root:
        # Set aside, not removed: if the new run fails before its first checkpoint the old one
        # comes back (restore_replaced); a crash in between leaves it there, hidden, never lost.
        aside = Path(tempfile.mkdtemp(prefix=f".{node.path.name}.replaced-", dir=node.path.parent))
        node.path.rename(aside / node.path.name)
        plan.replaced = aside / node.path.name
        log.warning("overwrite_data: the existing run %s (%d epochs) is set aside in %s and "
                    "removed once the new run has its first checkpoint", node.path,
                    len(Node(aside / node.path.name, "").summary()), aside)
    if plan.remove:
        with tree_lock(node.root):  # a branch made since planning must keep its fork point
            removed = set(plan.remove)
            forked = sorted(removed & node.referenced_epochs())
            if forked:
                raise TreeError(f"training.overwrite_data: a branch was forked from epoch "
                                f"{forked[0]} of {node.path} meanwhile; nothing was removed")
            for path in (p for paths in plan.remove.values() for p in paths):
                path.unlink(missing_ok=True)
        log.warning("overwrite_data: removed epochs %s of %s (rows and checkpoints)",
                    sorted(removed), node.path)
    if plan.kind == "new":
        node.folder.create(cfg)
        plan.created = True
        return
    if plan.kind == "branch":
        # Built in this creator's own temp folder and renamed into place: a half-made branch
        # never looks like one, of two forks with one name the second is refused, and nothing
        # is left behind (also on Ctrl+C).
        tmp = Path(tempfile.mkdtemp(prefix=f".{node.name}.", suffix=".creating",
                                    dir=node.path.parent))
        try:
            built = RunFolder(tmp / node.name)
            built.create(cfg)
            write_json(built.root / LINEAGE, plan.lineage)
            # Under the tree lock retention cannot delete the fork checkpoint between this check
            # and the rename; once the branch is in place, retention keeps its fork epoch.
            with tree_lock(node.root):
                ckpt = node.root / plan.lineage["fork_checkpoint"]
                sha = plan.lineage["fork_checkpoint_sha256"]
                if plan.materialise is not None and not ckpt.exists():
                    _materialise(*plan.materialise, sha)
                try:
                    intact = ckpt.is_file() and (sha is None or ckpt.with_name(
                        ckpt.name + ".sha256").read_text().split()[0] == sha)
                except (OSError, IndexError):
                    intact = False
                if not intact:
                    raise ConfigError(cfg.source, "training.continue_from_epoch",
                                      f"{ckpt} was removed or replaced while the branch was being "
                                      f"made (by checkpoint retention?); fork again")
                try:
                    built.root.rename(node.path)
                except OSError:  # a non-empty folder is in the way: another fork won the name
                    if not node.path.exists():
                        raise
                    raise ConfigError(cfg.source, "training.new_branch_name", f"{node.path} "
                                      f"already exists; choose another name") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        plan.created = True
        t = cfg.training
        at = (f"step {plan.start_epoch * t.eval_every_n_steps}" if t.num_iterations
              else f"epoch {plan.start_epoch}")
        log.info("new branch %s forked at %s of %s", node.rel, at, node.parent.path)
    else:
        atomic_write_text(node.folder.config, config_text(cfg))
