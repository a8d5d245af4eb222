"""Running a sweep's cells: each worker walks the cells and trains every one that is not done,
so running `rumpy sweep` again resumes (finished cells are skipped, interrupted or crashed ones
continue exactly from their last checkpoint, the rest start). Workers never share a cell: a cell
is claimed by starting it, and starting takes the node's lock (a second worker is refused and
moves on), so any number of workers, on one machine or as cluster jobs on a shared file system,
can run on one sweep folder.

The manifest, <sweep folder>/sweep.json, lists the cells and how to build their configs; a
worker needs nothing else."""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ..config import ConfigError
from ..core.run_folder import RunExistsError
from ..tree.lock import NodeLockedError, file_lock
from ..tree.node import Node, read_json, write_json
from ..utils.process import die_with_parent
from .spec import Cell, Sweep

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"
DONE = ("finished", "stopped_early", "diverged")   # never trained again by the sweep


def write_manifest(sweep: Sweep) -> None:
    """Creates or extends sweep.json; a cell already listed must keep its values."""
    sweep.folder.mkdir(parents=True, exist_ok=True)
    path = sweep.folder / MANIFEST
    with file_lock(sweep.folder / ".sweep.lock"):
        old = read_json(path)
        cells = [asdict(c) for c in sweep.cells]
        if old is not None:
            known = {c["name"]: c for c in old.get("cells", [])}
            for cell in cells:
                if cell["name"] in known and known[cell["name"]] != cell:
                    raise ConfigError(str(sweep.source), "sweep", f"{path} lists cell "
                                      f"{cell['name']} with other values; use another sweep name")
            cells = list(old.get("cells", [])) + [c for c in cells if c["name"] not in known]
        write_json(path, {
            "name": sweep.name, "source": str(sweep.source), "cfg_defaults": sweep.cfg_defaults,
            "overrides": sweep.overrides, "grid": sweep.grid, "seeds": sweep.seeds,
            "cells": cells, "updated": time.strftime("%Y-%m-%d %H:%M:%S")})


def read_manifest(folder: Path) -> Sweep:
    data = read_json(folder / MANIFEST)
    if data is None:
        raise FileNotFoundError(f"{folder} holds no {MANIFEST} (not a sweep folder)")
    return Sweep(Path(data["source"]), folder, data["name"], data["grid"], data["seeds"],
                 [Cell(c["name"], c["values"], c["seed"]) for c in data["cells"]],
                 data.get("cfg_defaults", []), data.get("overrides", []))


def cell_state(sweep: Sweep, cell: Cell) -> str:
    """'new' (no folder yet), or the node's state (running, finished, crashed, ...)."""
    node = Node(sweep.folder / cell.name, "")
    if not node.exists():
        return "new"
    return node.state()


def _extended(sweep: Sweep, cell: Cell) -> bool:
    """A finished cell goes on when the sweep file now asks for more epochs."""
    node = Node(sweep.folder / cell.name, "")
    if node.state() != "finished":
        return False
    try:
        wanted = sweep.config(cell).training.num_epochs
    except ConfigError:
        return False
    return wanted > max(node.own_saved(), default=0)


class _Stop:
    """Ctrl+C or SIGTERM between cells (training handles its own): no further cell starts."""

    requested = False

    def __init__(self):
        self.previous = {}

    def __enter__(self) -> "_Stop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _train_cell(sweep: Sweep, cell: Cell, resume: bool) -> tuple[str, bool]:
    from ..logs import attach_file, detach_file
    from ..training.setup import prepare, start
    from ..training.trainer import train

    cfg = sweep.config(cell)
    if resume:
        cfg.training.continue_from_epoch = "last"
    run = prepare(cfg)
    start(run)  # claims the cell: a second worker is refused here
    log.info("sweep %s: %s cell %s", sweep.name, "resuming" if resume else "starting", cell.name)
    handler = attach_file(run.folder.log)
    try:
        return train(run), run.stop_requested
    finally:
        detach_file(handler)


def run_cells(folder: Path) -> int:
    """One worker: trains every cell it can claim; 0 when it ran out of cells, 130 when it was
    interrupted (its cell saved, as any run), 1 when a cell failed (the others still ran)."""
    sweep = read_manifest(folder)
    failed = 0
    with _Stop() as stop:
        for cell in sweep.cells:
            if stop.requested:
                log.warning("sweep %s: stopped (Ctrl+C/SIGTERM); run it again to go on",
                            sweep.name)
                return 130
            outcome = _run_cell(sweep, cell)
            if outcome == "stopped":
                return 130
            failed += outcome == "failed"
    return 1 if failed else 0


def _run_cell(sweep: Sweep, cell: Cell) -> str:
    """'done' (trained, skipped or claimed by another worker), 'failed' or 'stopped'."""
    state = cell_state(sweep, cell)
    if state == "running" or (state in DONE and not _extended(sweep, cell)):
        return "done"
    try:
        outcome, stop_requested = _train_cell(sweep, cell, resume=state != "new")
    except (RunExistsError, NodeLockedError):
        log.info("sweep %s: cell %s was claimed by another worker", sweep.name, cell.name)
        return "done"
    except ConfigError as exc:
        if cell_state(sweep, cell) == "running" or cell_state(sweep, cell) in DONE:
            log.info("sweep %s: cell %s was claimed by another worker", sweep.name, cell.name)
            return "done"
        log.error("sweep %s: cell %s: %s", sweep.name, cell.name, exc)
        return "failed"
    # a stop that came during the cell's last steps ends the sweep too, not just the cell
    return "stopped" if outcome == "interrupted" or stop_requested else "done"


def status_lines(sweep: Sweep) -> list[str]:
    states = [(cell, cell_state(sweep, cell)) for cell in sweep.cells]
    counts: dict[str, int] = {}
    for _, state in states:
        counts[state] = counts.get(state, 0) + 1
    lines = [f"sweep {sweep.name}: {len(states)} cells; " +
             ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    lines += [f"  {cell.name}: {state}" for cell, state in states if state not in DONE[:2]]
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m rumpy.sweep.run FOLDER`: one worker process (what --workers starts)."""
    import sys

    from ..logs import setup_console

    setup_console()
    die_with_parent()  # `rumpy sweep` killed: this worker saves its cell and stops too
    folder = Path((argv or sys.argv[1:])[0])
    return run_cells(folder)


def submitit_worker(folder: str) -> int:
    """A cluster job's entry (pickled by submitit): one worker on the shared sweep folder."""
    from ..logs import setup_console

    setup_console()
    return run_cells(Path(folder))


if __name__ == "__main__":
    raise SystemExit(main())
