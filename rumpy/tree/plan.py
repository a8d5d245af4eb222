"""Deciding what a train_sisr call does to the result tree, before anything is written:
start a new run, continue a node in place, or fork a branch. `tree/apply.py` then does the
writes."""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from ..config.compose import flatten
from ..config.load import load_config, stored_config, to_toml_dict
from ..config.periods import period_steps, step_based
from ..config.schema import InternalParams, TrainingConfig
from ..core.run_folder import RunFolder
from ..core.checkpoint import CorruptCheckpoint, is_weights_only, load_checkpoint
from ..core.columns import resolve
from ..core.monitor import Monitor, infer_mode
from ..utils.names import name_problem
from .recover import node_config, recoverable
from .refusals import (TreeError, check_location, check_needed_keys, file_problem,
                       write_problem)
from .lock import check_unlocked, tree_lock
from .node import (BEST, INTERRUPTED, LAST, RESERVED, Node, foreign_content,
                   pointer_epoch)

log = logging.getLogger(__name__)
# Keys that change how many optimizer steps a schedule sized by the run spans: a continue or
# branch that changes one rebuilds the schedule (advanced to its start) instead of loading it.
SCHEDULE_LENGTH = ("training.num_epochs", "training.num_iterations",
                   "training.accumulate_grad_batches",
                   "training.limit_train_batches")

# Keys an in-place continue may change: they do not change what the run computes.
IN_PLACE_CHANGES = (
    "training.num_epochs", "training.num_iterations", "training.save_checkpoint_every_n_steps",
    "training.write_output_every_n_steps", "training.early_stopping_patience", "training.early_stopping_metric",
    "training.early_stopping_mode", "training.early_stopping_min_delta",
    "training.early_stopping_reset_on_branch", "training.gpu", "training.sp_gpu",
    "training.logging", "training.save_samples", "training.num_samples",
    "training.keep_every_n_epochs", "training.keep_last_n", "training.save_checkpoint_frequency",
    "training.save_best_cooldown", "training.weights_snapshots", "training.write_output_nth_epoch",
    "training.deterministic", "training.log_grad", "training.detect_anomaly", "training.aim_track",
    "training.aim_home", "training.trackers", "training.precision", "training.amp",
    "training.tf32", "training.channels_last", "training.compile", "training.cudnn_benchmark",
    "data.dataloader_threads",
    "data.cache", "data.cache_dir", "data.cache_memory_limit_gb", "data.eval_batch_size",
)
LOCATION_KEYS = ("experiment", "experiment_save_loc")
# A plugin file's hash is a record, not a setting: a changed plugin is a warning (plugins.py).
NOT_SETTINGS = LOCATION_KEYS + ("plugin_sha256",)
# aim_home defaults to experiment_save_loc; a moved Results folder changes both.


@dataclass
class Plan:
    kind: str                          # 'new', 'continue' or 'branch'
    node: Node                         # the node that will be trained
    start_epoch: int = 0               # epochs already done
    state: dict | None = None          # checkpoint to resume from
    rows: list[dict] = field(default_factory=list)   # summary rows the node starts with
    steps_from: Path | None = None     # node whose steps.csv rows (up to the start) it keeps
    load_optimizer: bool = True
    load_scheduler: bool = True
    reset_early_stopping: bool = False
    lineage: dict | None = None
    remove: dict[int, list[Path]] = field(default_factory=dict)  # epoch -> files apply_plan
                                                                 # removes (overwrite_data)
    materialise: tuple[Path, Path] | None = None  # (last.pt or best.pt, epoch_N.pt) of a fork
    set_aside: list[Path] = field(default_factory=list)  # corrupt checkpoints, renamed
    remove_root: bool = False
    created: bool = False              # apply_plan made the node's folder (new run or branch)
    replaced: Path | None = None       # the run overwrite_data replaces, kept aside until the
                                       # new one's first checkpoint (then removed)


def _override_model(cfg: RunConfig, node: Node, diff: dict) -> dict:
    """`new_params_override_load` (the original tool's key) when the model settings differ from
    the node's: false keeps the node's own, true takes the file's -- in a new branch, since a
    node's settings never change in place."""
    t = cfg.training
    changed = [k for k in diff if k.startswith("model.")]
    if not changed or t.new_params_override_load is None:
        return diff
    if t.new_params_override_load is False:
        cfg.model = load_config(node.folder.config).model
        log.warning("new_params_override_load = false: %s keeps its own model settings (%s)",
                    node.path, ", ".join(changed))
        return config_diff(stored_config(node.folder.config), to_toml_dict(cfg))
    if not t.new_branch:
        t.new_branch = True
        log.warning("new_params_override_load = true: the changed model settings (%s) go to a "
                    "new branch of %s", ", ".join(changed), node.path)
    return diff


def config_diff(old: dict, new: dict) -> dict[str, list]:
    a, b = flatten(old), flatten(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and k not in NOT_SETTINGS and
            not k.startswith("plugin_sha256.")}


def _architecture_keys(diff: dict) -> list[str]:
    """Changed keys that define the network: the task, its name, scale and own parameters
    (every key of internal_params that is not a training setting), and what its inputs and
    outputs mean (normalised or not)."""
    training = set(InternalParams.__dataclass_fields__) - {"scale"}
    fixed = ("task", "model.name", "data.normalize_inputs", "data.normalize_targets")
    return [k for k in diff if k in fixed or
            (k.startswith("model.internal_params.") and k.split(".")[2] not in training)]


def _node_for(cfg: RunConfig, root: Path) -> Node:
    rel = cfg.training.branch_root.strip("/")
    parts = rel.split("/") if rel else []
    for part in parts:
        problem = name_problem(part, branch=True) or (
            f"{part!r} is a name rumpy uses" if part in RESERVED else None)
        if problem:
            raise TreeError(f"training.branch_root: {rel!r} is not a branch path: {problem}")
    node = Node(root, "/".join(parts))
    for depth in range(1, len(parts) + 1):
        if root.joinpath(*parts[:depth]).is_symlink():
            raise TreeError(f"training.branch_root: {root.joinpath(*parts[:depth])} is a symbolic "
                            f"link; rumpy follows none, so writes stay inside {root}")
    if not node.exists() and not recoverable(node):
        known = [n.rel for n in Node(root, "").walk() if n.rel] if Node(root, "").exists() else []
        where = f"branch {rel!r} of {root}" if rel else str(root)
        hint = f"; branches: {', '.join(known)}" if known else ""
        origin = cfg.origins.get("experiment_save_loc")
        how = f"set by {origin}" if origin else "the default"
        raise TreeError(f"training.continue_from_epoch: there is no run at {where}{hint} "
                        f"(experiment_save_loc resolved to {cfg.experiment_save_loc}, {how}; a "
                        f"relative path resolves against the folder of the TOML that sets it)")
    return node


def _resume_point(node: Node, choice, cfg: RunConfig, plan: Plan) -> tuple[int, dict]:
    """(epoch, checkpoint state) to continue from. 'last' falls back past corrupt checkpoints
    with a warning; an explicit epoch or 'best' must be intact."""
    own = node.own_saved()
    if choice == "last":
        interrupted = node.folder.models / INTERRUPTED
        last_own = max(own, default=node.fork_epoch)
        if interrupted.is_file():
            try:
                state = load_checkpoint(interrupted)
                if state["epoch"] == last_own + 1 and "resume" in state:
                    return state["epoch"] - 1, state
            except CorruptCheckpoint as exc:
                log.warning("%s; ignoring it", exc)
                plan.set_aside.append(interrupted)
        # Newest first; of one epoch, epoch_N.pt before last.pt/best.pt (a hard link to a
        # damaged file is damaged too, a copy may be whole) and weights_N.pt last.
        files = _own_files(node)
        for epoch in sorted(files, reverse=True):
            for path in files[epoch]:
                try:
                    return epoch, load_checkpoint(path)
                except CorruptCheckpoint as exc:
                    log.warning("%s; falling back to the previous checkpoint", exc)
                    plan.set_aside.append(path)
        if node.rel:
            path = node.checkpoint_for(node.fork_epoch)
            if path is not None:
                return node.fork_epoch, load_checkpoint(path)
        raise TreeError(f"training.continue_from_epoch: {node.path} has no usable checkpoint "
                        f"(it stopped before finishing an epoch); start it again with "
                        f"overwrite_data = true")
    if choice == "best":
        try:
            choice, metric, value = best_saved_epoch(node, cfg.training.best_load_metric)
        except ValueError as exc:
            raise TreeError(f"training.best_load_metric: {exc}") from None
        if choice is None:
            raise TreeError(f"training.continue_from_epoch: no saved epoch of {node.path} has "
                            f"a {metric} value")
        log.info("best %s of %s: %s at epoch %d", metric, node.path, value, choice)
    path = node.checkpoint_for(choice)
    if path is None:
        kept = sorted(node.saved_epochs())
        every = cfg.training.eval_every_n_steps if cfg.training.continue_from_step else 0
        if every:  # asked for a step: said in steps
            raise TreeError(f"training.continue_from_step: {node.path} has no checkpoint of step "
                            f"{choice * every} (saved steps: "
                            f"{', '.join(str(e * every) for e in kept) or 'none'})")
        raise TreeError(f"training.continue_from_epoch: {node.path} has no checkpoint of epoch "
                        f"{choice} (saved epochs: {', '.join(map(str, kept)) or 'none'})")
    try:
        return choice, load_checkpoint(path)
    except CorruptCheckpoint as exc:
        raise TreeError(f"training.continue_from_epoch: {exc}") from None


def best_saved_epoch(node: Node, metric: str) -> tuple[int | None, str, float | None]:
    """(epoch, column, value) of the best epoch by `metric` among the epochs the node can load
    (its own and inherited checkpoints, last.pt, best.pt, weights snapshots); the epoch is None
    when none has a value. ValueError for a metric without a direction."""
    saved = node.saved_epochs()
    rows = [r for r in node.summary() if r["epoch"] in saved]
    column = resolve(metric, list(rows[0]) if rows else [])
    monitor = Monitor(column, infer_mode(column, directions=node.directions()))
    monitor.replay(rows)
    return monitor.best_epoch, column, monitor.best


def _rows_until(node: Node, epoch: int, state: dict) -> list[dict]:
    """The node's summary rows up to `epoch`. A row summary.csv lacks (killed between the
    checkpoint and the row; the file deleted, truncated or damaged) is rebuilt from the
    checkpoint of that epoch, which carries its row; a row with no checkpoint left is lost, and
    both are said."""
    by_epoch = {r["epoch"]: r for r in node.summary() if r["epoch"] <= epoch}
    fork = node.fork_epoch if node.rel else 0
    rebuilt, lost = [], []
    for e in range(1, epoch + 1):
        if e in by_epoch:
            continue
        saved = state if state.get("epoch") == e and "resume" not in state else None
        path = node.checkpoint_for(e)
        if saved is None and path is not None:
            try:
                saved = load_checkpoint(path)
            except CorruptCheckpoint:
                saved = None
        if saved is not None and saved.get("summary_row"):
            by_epoch[e] = {**saved["summary_row"], "inherited": int(e <= fork)}
            rebuilt.append(e)
        else:
            lost.append(e)
    if rebuilt:
        log.warning("summary.csv of %s lacked epochs %s: rebuilt from their checkpoints",
                    node.path, _ranges(rebuilt))
    if lost:
        log.warning("summary.csv of %s lacks epochs %s and no checkpoint of them is left (removed "
                    "by retention?): those rows are lost", node.path, _ranges(lost))
    return [by_epoch[e] for e in sorted(by_epoch)]


def _ranges(epochs: list[int]) -> str:
    out, start = [], epochs[0]
    for prev, cur in zip(epochs, epochs[1:] + [None]):
        if cur != prev + 1:
            out.append(f"{start}-{prev}" if prev > start else str(start))
            start = cur
    return ", ".join(out)


def plan_run(cfg: RunConfig) -> Plan:
    """What this call does to the tree: a new run, a continue in place or a new branch; every
    refusal is raised here, before anything is written."""
    t = cfg.training
    root = Path(cfg.experiment_save_loc) / cfg.experiment
    check_needed_keys(t)
    check_location(Path(cfg.experiment_save_loc), root)
    if t.continue_from_epoch is None:
        return _plan_new(t, root)
    node = _node_for(cfg, root)
    problem = node.link_problem() or file_problem(node) or write_problem(node)
    if problem:
        raise TreeError(f"training.continue_from_epoch: {problem}")
    try:
        stored = node_config(node)
    except ValueError as exc:
        raise TreeError(f"training.continue_from_epoch: {exc}") from None
    diff = config_diff(stored, to_toml_dict(cfg))
    diff = _override_model(cfg, node, diff)
    arch = _architecture_keys(diff)
    if arch:
        changes = "; ".join(f"{k}: {diff[k][0]!r} -> {diff[k][1]!r}" for k in arch)
        raise TreeError(f"{arch[0]}: the architecture cannot change on continue or in a branch "
                        f"({changes}); start a new run instead")
    _check_unit(stored, t, node)
    if t.new_branch:
        return _plan_branch(cfg, root, node, diff)
    return _plan_continue(cfg, node, diff)


def _check_unit(stored: dict, t: TrainingConfig, node: Node) -> None:
    """A node's epochs are data passes or validation periods of N steps, for all of its tree:
    a continue or branch keeps the unit and the period (epoch K is step K x N everywhere)."""
    old = stored.get("training") or {}
    if step_based(old) != step_based(t):
        unit = "validation periods of optimizer steps (num_iterations)" if step_based(old) \
            else "data passes (num_epochs)"
        raise TreeError(f"training.num_iterations: {node.path} counts its epochs in {unit}; a "
                        f"continue or branch keeps that unit (start a new run from its weights "
                        f"with init_weights_path to change it)")
    if step_based(t) and period_steps(old) != t.eval_every_n_steps:
        raise TreeError(f"training.eval_every_n_steps: {node.path} validates every "
                        f"{period_steps(old)} steps; a continue or branch keeps the period (its "
                        f"checkpoints are numbered by it)")


def _plan_new(t: TrainingConfig, root: Path) -> Plan:
    """A fresh run; over an existing one only with overwrite_data, and only over rumpy's own."""
    plan = Plan("new", Node(root, ""))
    if root.exists():
        if not t.overwrite_data:
            RunFolder(root).ensure_absent()
        check_unlocked(root)
        foreign = foreign_content(root)
        if foreign:
            raise TreeError(f"training.overwrite_data: refusing to remove {root}: {foreign}; "
                            f"rumpy removes only run folders it made")
        branches = [n.rel for n in plan.node.walk() if n.rel]
        if branches:
            raise TreeError(f"training.overwrite_data: {root} has branches "
                            f"({', '.join(branches)}); remove them before overwriting the run")
        plan.remove_root = True
    return plan


def _start_from(plan: Plan, epoch: int, state: dict, t: TrainingConfig) -> None:
    """The checkpoint a continue or branch starts from, and what it can restore."""
    plan.start_epoch, plan.state = epoch, state
    if is_weights_only(state):
        plan.load_optimizer = plan.load_scheduler = False
        log.warning("epoch %d of %s has only its weights (weights_N.pt): training starts a fresh "
                    "optimizer, and the scheduler is replayed to epoch %d", epoch,
                    plan.node.path, epoch)
    if t.num_epochs <= epoch and step_based(t):
        raise TreeError(f"training.num_iterations: {epoch * t.eval_every_n_steps} steps are "
                        f"already done (continuing from step {epoch * t.eval_every_n_steps}); "
                        f"raise num_iterations")
    if t.num_epochs <= epoch:
        raise TreeError(f"training.num_epochs: {t.num_epochs} epochs are already done "
                        f"(continuing from epoch {epoch}); raise num_epochs")


def _plan_branch(cfg: RunConfig, root: Path, node: Node, diff: dict) -> Plan:
    """A new node inside `node`, forked at a saved epoch with the config's changes."""
    t = cfg.training
    plan = Plan("branch", node, steps_from=node.path)
    # A fork reads its checkpoint under the tree lock, so retention cannot delete it meanwhile.
    with tree_lock(root):
        epoch, state = _resume_point(node, t.continue_from_epoch, cfg, plan)
        plan.set_aside = []  # a fork never renames its parent's files
        fork_ckpt = node.checkpoint_for(epoch)
        if fork_ckpt is None:
            raise TreeError(f"training.continue_from_epoch: {node.path} has no checkpoint of "
                            f"epoch {epoch} to fork from")
        if "resume" in state:  # 'last' found a mid-epoch checkpoint: fork at the epoch before
            state = load_checkpoint(fork_ckpt)
        if fork_ckpt.name in (LAST, BEST):  # the fork point becomes an epoch checkpoint
            plan.materialise = (fork_ckpt, node.folder.checkpoint(epoch))
        try:
            fork_sha = fork_ckpt.with_name(fork_ckpt.name + ".sha256").read_text().split()[0]
        except (OSError, IndexError):
            raise TreeError(f"training.continue_from_epoch: the checksum of {fork_ckpt} is "
                            f"gone or empty") from None
    _start_from(plan, epoch, state, t)
    # named by where it starts, in the run's unit
    name = t.new_branch_name or (f"branch_step_{epoch * t.eval_every_n_steps}"
                                 if t.num_iterations else f"branch_epoch_{epoch}")
    problem = name_problem(name, branch=True) or (
        f"{name!r} is a name rumpy uses (not {', '.join(sorted(RESERVED))})"
        if name in RESERVED else None)
    if problem:
        raise TreeError(f"training.new_branch_name: {problem}")
    target = node.path / name
    if target.exists():
        raise TreeError(f"training.new_branch_name: {target} already exists; choose another name")
    plan.node = Node(root, f"{node.rel}/{name}" if node.rel else name)
    plan.rows = [{**r, "inherited": 1} for r in _rows_until(node, epoch, state)]
    plan.load_optimizer = plan.load_optimizer and not t.skip_optimizer_load
    changed_schedule = any(k.startswith(("model.internal_params.lr",
                                         "model.internal_params.scheduler",
                                         "model.internal_params.optimizer",
                                         "data.batch_size", *SCHEDULE_LENGTH))
                           for k in diff)
    plan.load_scheduler = plan.load_scheduler and not t.skip_scheduler_load and \
        not changed_schedule
    plan.reset_early_stopping = t.early_stopping_reset_on_branch
    plan.lineage = {
        "parent": node.rel, "fork_epoch": epoch,
        "fork_checkpoint": str((plan.materialise[1] if plan.materialise
                                else fork_ckpt).relative_to(root)),
        "fork_checkpoint_sha256": fork_sha,
        "config_diff": diff, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv), "skip_optimizer_load": t.skip_optimizer_load,
        "skip_scheduler_load": t.skip_scheduler_load,
        "scheduler_rebuilt": not plan.load_scheduler,
    }
    return plan


def _plan_continue(cfg: RunConfig, node: Node, diff: dict) -> Plan:
    """The same node goes on, with its own settings, from a saved epoch (later epochs removed
    only with overwrite_data)."""
    t = cfg.training
    plan = Plan("continue", node, steps_from=node.path)
    epoch, state = _resume_point(node, t.continue_from_epoch, cfg, plan)
    _start_from(plan, epoch, state, t)
    check_unlocked(node.path)
    if node.rel and epoch < node.fork_epoch:
        parent = node.parent.rel or "''"
        raise TreeError(f"training.continue_from_epoch: epoch {epoch} comes before branch "
                        f"{node.rel}'s fork (epoch {node.fork_epoch}); fork its parent instead "
                        f"(--branch_root {parent} --new_branch)")
    changed = [k for k in diff if k not in IN_PLACE_CHANGES]
    if changed:
        shown = "; ".join(f"{k}: {diff[k][0]!r} -> {diff[k][1]!r}" for k in changed[:4])
        raise TreeError(f"{changed[0]}: differs from {node.folder.config} ({shown}); an in-place "
                        f"continue may change only {', '.join(IN_PLACE_CHANGES[:6])}, ... "
                        f"(docs/result_tree.md): put other changes in a branch (new_branch = true)")
    files = _own_files(node)
    later = [e for e, paths in files.items() if e > epoch and
             any(p not in plan.set_aside for p in paths)]
    if later and not t.overwrite_data:
        raise TreeError(f"training.continue_from_epoch: epoch {epoch} is not the last epoch "
                        f"({max(later)}) of {node.path}; fork it with new_branch = true, or pass "
                        f"overwrite_data = true to delete epochs {epoch + 1}-{max(later)}")
    redone = [r["epoch"] for r in node.summary() if r["epoch"] > epoch]
    if redone and not later:
        log.warning("epochs %s of %s have no usable checkpoint and will be trained again",
                    redone, node.path)
    blocking = sorted(e for e in node.referenced_epochs() if e > epoch)
    if later and blocking:
        raise TreeError(f"training.overwrite_data: branches were forked from epochs "
                        f"{blocking} of {node.path}, after epoch {epoch}; remove those branches "
                        f"first")
    for e in later:
        plan.remove[e] = [q for p in files[e] for q in (p, p.with_name(p.name + ".sha256"))]
    plan.rows = _rows_until(node, epoch, state)
    # A schedule sized by num_epochs (cosine's T_max, one-cycle's total) is rebuilt for the new
    # length, as a branch's is: the old one would run past its end (a cosine climbs back up).
    if any(k in diff for k in SCHEDULE_LENGTH):
        plan.load_scheduler = False
    return plan


def _own_files(node: Node) -> dict[int, list[Path]]:
    """Every checkpoint file of the node by epoch: epoch_N.pt, weights_N.pt, last.pt, best.pt."""
    out: dict[int, list[Path]] = {}
    checkpoints = node.own_checkpoints()
    for epoch, path in checkpoints.items():
        out.setdefault(epoch, []).append(path)
    for name in (LAST, BEST):
        epoch = pointer_epoch(node.folder.models / name, checkpoints)
        if epoch is not None:
            out.setdefault(epoch, []).append(node.folder.models / name)
    for epoch, path in node.own_snapshots().items():
        out.setdefault(epoch, []).append(path)
    return out
