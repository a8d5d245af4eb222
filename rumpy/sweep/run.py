"""Running a sweep's cells: each worker walks the cells and trains every one that is not done,
so running `rumpy sweep` again resumes (finished cells are skipped, interrupted or crashed ones
continue exactly from their last checkpoint, the rest start). Workers never share a cell: a cell
is claimed by starting it, and starting takes the node's lock (a second worker is refused and
moves on), so any number of workers, on one machine or as cluster jobs on a shared file system,
can run on one sweep folder.

The manifest, <sweep folder>/sweep.json, lists the cells and how to build their configs; a
worker needs nothing else."""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ..config import ConfigError
from ..core.run_folder import RunExistsError
from ..tree.lock import NodeLockedError, file_lock, lock_holder
from ..tree.node import Node, write_json
from ..utils.process import die_with_parent
from .spec import Cell, Sweep

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"
DONE = ("finished", "stopped_early", "diverged", "pruned")   # never trained again by the sweep


class ManifestError(ValueError):
    """sweep.json is damaged: one line naming it (never a traceback)."""


# What a search's manifest keeps of its spec; all but n_trials must stay as the study began.
_SEARCH_FIELDS = ("n_trials", "metric", "direction", "sampler", "pruner", "space", "start_from")


def write_manifest(sweep: Sweep) -> None:
    """Creates or extends sweep.json; a cell already listed must keep its values, a search
    its space, metric, sampler and pruner (n_trials may grow)."""
    sweep.folder.mkdir(parents=True, exist_ok=True)
    path = sweep.folder / MANIFEST
    with file_lock(sweep.folder / ".sweep.lock"):
        old = _read_manifest_data(path) if path.exists() else None
        cells = [asdict(c) for c in sweep.cells]
        if old is not None:
            known = {c["name"]: c for c in old.get("cells", [])}
            for cell in cells:
                if cell["name"] in known and known[cell["name"]] != cell:
                    raise ConfigError(str(sweep.source), "sweep", f"{path} lists cell "
                                      f"{cell['name']} with other values; use another sweep name")
            cells = list(old.get("cells", [])) + [c for c in cells if c["name"] not in known]
        search = None
        if sweep.search is not None:
            search = {k: getattr(sweep.search, k) for k in _SEARCH_FIELDS}
            before = (old or {}).get("search")
            if old is not None and (before is None or any(
                    before.get(k) != v for k, v in search.items() if k != "n_trials")):
                changed = "grid" if before is None else next(
                    k for k, v in search.items() if k != "n_trials" and before.get(k) != v)
                raise ConfigError(str(sweep.source), f"sweep.search.{changed}",
                                  f"{path} holds a study begun with another {changed}; use "
                                  f"another sweep name (only n_trials may change)")
        elif old is not None and old.get("search") is not None:
            raise ConfigError(str(sweep.source), "sweep.grid", f"{path} holds a search; use "
                                                               f"another sweep name")
        write_json(path, {
            "name": sweep.name, "source": str(sweep.source), "cfg_defaults": sweep.cfg_defaults,
            "overrides": sweep.overrides, "grid": sweep.grid, "seeds": sweep.seeds,
            "cells": cells, "search": search, "updated": time.strftime("%Y-%m-%d %H:%M:%S")})


def _read_manifest_data(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path.parent} holds no {MANIFEST} (not a sweep folder)") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is damaged ({' '.join(str(exc).split())[:120]}); remove it "
                            f"and run `rumpy sweep` on the sweep file again to rewrite it (the "
                            f"cells' folders are kept)") from None
    problem = _manifest_problem(data)
    if problem:
        raise ManifestError(f"{path} is damaged ({problem}); remove it and run `rumpy sweep` "
                            f"on the sweep file again to rewrite it (the cells' folders are "
                            f"kept)")
    return data


def _manifest_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, kind in (("name", str), ("source", str), ("grid", dict), ("seeds", list),
                      ("cells", list)):
        if not isinstance(data.get(key), kind):
            return f"{key}: missing or not a {kind.__name__}"
    for cell in data["cells"]:
        if not isinstance(cell, dict) or not isinstance(cell.get("name"), str) or \
                not isinstance(cell.get("values"), dict) or not isinstance(cell.get("seed"), int):
            return f"cells: {str(cell)[:60]} is not a cell"
    search = data.get("search")
    if search is not None and (not isinstance(search, dict) or
                               any(k not in search for k in _SEARCH_FIELDS)):
        return "search: incomplete"
    return None


def read_manifest(folder: Path) -> Sweep:
    data = _read_manifest_data(folder / MANIFEST)
    search = None
    if data.get("search") is not None:
        from .search_spec import SearchSpec

        search = SearchSpec(**{k: data["search"][k] for k in _SEARCH_FIELDS})
    return Sweep(Path(data["source"]), folder, data["name"], data["grid"], data["seeds"],
                 [Cell(c["name"], c["values"], c["seed"]) for c in data["cells"]],
                 data.get("cfg_defaults", []), data.get("overrides", []), search)


def cell_state(sweep: Sweep, cell: Cell) -> str:
    """'new' (no folder yet), or the node's state (running, finished, crashed, ...)."""
    node = Node(sweep.folder / cell.name, "")
    if not node.exists():
        return "new"
    state = node.state()
    if state != "running" and lock_holder(node.path) is not None:
        return "running"  # another worker is starting it (its status is not written yet)
    return state


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


def _train_cell(sweep: Sweep, cell: Cell) -> tuple[str, bool]:
    from .cell import resume_mode, train_node

    cfg = sweep.config(cell)
    node = Node(sweep.folder / cell.name, "")
    mode = resume_mode(node, cfg.training.num_epochs)
    return train_node(cfg, node, mode,
                      announce=f"sweep {sweep.name}: {_VERB[mode]} cell {cell.name}")


_VERB = {"new": "starting", "continue": "resuming", "restart": "restarting",
         "finish": "finishing"}


def run_cells(folder: Path) -> int:
    """One worker: trains every cell it can claim; 0 when it ran out of cells, 130 when it was
    interrupted (its cell saved, as any run), 1 when a cell failed (the others still ran)."""
    sweep = read_manifest(folder)
    if sweep.search is not None:
        from .search_run import run_trials

        return run_trials(sweep)
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
        outcome, stop_requested = _train_cell(sweep, cell)
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
    if sweep.search is not None:
        from .search_status import search_status_lines

        return search_status_lines(sweep)
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
