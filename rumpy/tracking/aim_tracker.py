"""One Aim run per result-tree node. An in-place continue reopens the node's Aim run (its hash is
in status.json); a branch gets a new run that first receives the parent's history up to the
fork, so its curves are whole in the UI. Any Aim failure is a single warning, never a stop."""
from __future__ import annotations

import contextlib
import fcntl
import logging
from pathlib import Path

from ..config.load import to_toml_dict
from .registry import TRACKERS, Tracker, context, step_values, x_of

log = logging.getLogger(__name__)
_CLOSED: list = []


def warm() -> None:
    """Aim's import (~0.8 s of CPU), made while the run is being set up (output worker)."""
    import aim  # noqa: F401


def _system_params() -> dict:
    import platform

    import torch

    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "host": platform.node(), "cuda": torch.version.cuda or "none",
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}


@contextlib.contextmanager
def _init_lock(home: Path):
    # Aim's repository initialisation is not safe against a concurrent first writer.
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".aim-init.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _init_repo(home: Path) -> None:
    """Make the Aim repository once. Aim's init migrates its database in a new Python process
    (~1 s of CPU and wall) every time it is asked, so only a repository without VERSION (which
    Aim writes last) is initialised; a run opening an existing one migrates it if it must."""
    from aim import Repo
    from aim.sdk.configs import get_aim_repo_name

    if (home / get_aim_repo_name() / "VERSION").is_file():
        return
    with _init_lock(home):
        if not (home / get_aim_repo_name() / "VERSION").is_file():
            Repo.from_path(str(home), init=True)


class _DropForceRelease(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Force-releasing locks")


@contextlib.contextmanager
def _quiet_force_release():
    """Aim warns "Force-releasing locks ... Data corruption may occur" whenever a run is
    reopened with force_resume. rumpy reopens a node's run only while it holds that node's lock,
    so no other process can be writing it: the warning would only alarm (rumpy logs its own
    line instead)."""
    logger, drop = logging.getLogger("aim.sdk.lock_manager"), _DropForceRelease()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@TRACKERS.register("aim")
class AimTracker(Tracker):
    name = "Aim"

    def __init__(self, run, eval_sets: list[str], new_run: bool):
        super().__init__(eval_sets)
        self.run = run
        self.hash = run.hash
        self.new_run = new_run  # a new run needs the node's history so far

    @classmethod
    def open(cls, run) -> "AimTracker | None":
        """The node's Aim run: reopened on an in-place continue, new (with the history so far)
        for a new node or a branch."""
        cfg, node, plan = run.cfg, run.node, run.plan
        parent = node.parent
        lineage = {"experiment_dir": str(node.root), "node": node.rel or ".",
                   "parent": (parent.rel or ".") if parent else None,
                   "parent_aim_run": parent.status.get("aim_run_hash") if parent else None,
                   "fork_epoch": node.fork_epoch if node.rel else None, "task": cfg.task}
        if cfg.sweep:  # a sweep's cells share its name as their Aim experiment: one group
            lineage["sweep"] = cfg.sweep
        experiment = cfg.sweep["name"] if cfg.sweep else cfg.experiment
        run_hash = node.status.get("aim_run_hash") if plan.kind == "continue" else None
        tracker = cls._open(Path(cfg.training.aim_home), experiment, node.rel, run_hash,
                            {"config": to_toml_dict(cfg), "lineage": lineage},
                            list(run.eval_sets))
        if tracker is not None:
            tracker.status = {"aim_run_hash": tracker.hash}
            # a new run gets the node's history so far; a reopened one the epochs it lacks
            # (a killed process's last epochs never reached it)
            for row in plan.rows if tracker.new_run else tracker.untracked(plan.rows):
                tracker.track_row(row)
        return tracker

    @classmethod
    def _open(cls, home: Path, experiment: str, node_rel: str, run_hash: str | None,
              params: dict, eval_sets: list[str]) -> "AimTracker | None":
        """The node's Aim run (reopened when run_hash is given and exists), or None with a
        warning when Aim cannot be used."""
        try:
            from aim import Run

            _init_repo(home)
            run = None
            if run_hash:
                try:
                    with _quiet_force_release():
                        run = Run(run_hash=run_hash, repo=str(home), force_resume=True,
                                  capture_terminal_logs=False)
                    log.info("Aim run %s reopened (its lock from the previous process released: "
                             "this one holds the node's lock, so no other writes to it)", run_hash)
                except Exception as exc:  # deleted or unreadable: start a new run instead
                    log.warning("Aim run %s could not be reopened (%s); starting a new one",
                                run_hash, exc)
            if run is None:
                # log_system_params is off: it needs pkg_resources, gone from new setuptools;
                # the essentials are recorded below. CPU/GPU/memory are still tracked over time.
                run = Run(repo=str(home), experiment=experiment, log_system_params=False,
                          capture_terminal_logs=False)
                run.name = f"{experiment}/{node_rel}" if node_rel else experiment
            run["hparams"] = params["config"]
            run["rumpy"] = params["lineage"]
            run["system"] = _system_params()
            return cls(run, eval_sets, new_run=not run_hash or run.hash != run_hash)
        except Exception as exc:
            log.warning("Aim tracking is off for this run (%s: %s); CSV and PNG logging go on",
                        type(exc).__name__, exc)
            return None

    def untracked(self, rows: list[dict]) -> list[dict]:
        """The rows this run lacks a value of (shared with `rumpy track`): a killed process
        flushes Aim's curves unevenly, so each row's every value is looked for. Aim keys values
        by step: a row sent again overwrites, never doubles."""
        held = set()
        try:
            for metric in self.run.metrics():
                key = (metric.name, tuple(sorted(metric.context.to_dict().items())))
                held.update((key, int(step)) for step in metric.dataframe()["step"])
        except Exception as exc:  # an unreadable run: everything is sent again
            log.warning("Aim run %s cannot be read (%s); its epochs are sent again",
                        self.hash, exc)
            return list(rows)
        return [row for row in rows if any(
            ((info.metric, tuple(sorted(context(info).items()))), x_of(row)) not in held
            for info, _ in self.columns(row))]

    def track_row(self, row: dict) -> None:
        epoch, x = int(row["epoch"]), x_of(row)
        for info, value in self.columns(row):
            # NaN and inf are tracked as they are (a diverged run shows as a gap)
            self._safe(self.run.track, value, name=info.metric, step=x, epoch=epoch,
                       context=context(info))

    def track_steps(self, rows: list[dict]) -> None:
        for row in rows:
            for column, value in step_values(row):
                self._safe(self.run.track, value, name=column, step=int(row["step"]),
                           epoch=int(row["epoch"]), context={"subset": "step"})

    def track_images(self, epoch: int, set_name: str, images: list,
                     step: int | None = None) -> None:
        def track():
            from aim import Image

            from ..results.samples import COMPRESS_LEVEL
            for _, img in images:
                # Aim re-encodes the image with PIL; PIL keeps a save's options on the image,
                # so this makes Aim's PNG as cheap as the strip on disk (zlib default: 3x slower)
                img.encoderinfo = {**getattr(img, "encoderinfo", {}),
                                   "compress_level": COMPRESS_LEVEL}
            self.run.track([Image(img, caption=caption) for caption, img in images], name="samples",
                           step=epoch if step is None else step, epoch=epoch,
                           context={"subset": "val", "set": set_name})
        self._safe(track)

    def ending(self) -> None:
        # Aim's system-metrics thread checks for shutdown every 0.1 s, and run.close() joins
        # it: told now, it has ended by the time close comes (after the last images and plots)
        sampler = getattr(self.run, "_system_resource_tracker", None)
        if sampler is not None and hasattr(sampler, "_shutdown"):
            sampler._shutdown = True

    def close(self) -> None:
        self._safe(self.run.close)
        # Kept referenced: when Aim's storage failed (a full disk), the finalizer that runs when
        # a Run is collected waits forever; kept alive, it would run only at exit, which the
        # command line then skips (cli/train.py: script).
        _CLOSED.append(self.run)
