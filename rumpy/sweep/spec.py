"""A sweep: a normal config plus a [sweep] table,

    [sweep]
    grid = { "model.internal_params.lr" = [1e-3, 5e-4], "model.internal_params.num_blocks" = [4, 8] }
    seeds = [42, 195, 335]          # or repetitions = 3 (training.seed, +1, +2)
    name = "lr_blocks"              # optional: the sweep folder's name (default: experiment)

Each cell (a grid combination x a seed) is an ordinary run folder <save_loc>/<name>/<cell>/,
named by its values, e.g. `lr=0.001,num_blocks=4,seed=42`. Every cell's config is built and
checked (the config loader and the registries) before anything runs.

`[sweep.search]` (search_spec.py) makes the sweep an Optuna study instead of a grid: its cells
are its trials x seeds, made as the study asks for them (search_run.py)."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from ..config.compose import compose
from ..registry import did_you_mean
from .search_spec import SearchSpec, read_search, sample_values

SWEEP_KEYS = ("grid", "seeds", "repetitions", "name", "search")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+-]")


@dataclass
class Cell:
    name: str
    values: dict[str, Any]     # grid key -> value
    seed: int

    def setting(self) -> tuple:
        """What the cell's seeds share: its grid values."""
        return tuple(sorted((k, repr(v)) for k, v in self.values.items()))


@dataclass
class Sweep:
    source: Path
    folder: Path
    name: str
    grid: dict[str, list]
    seeds: list[int]
    cells: list[Cell] = field(default_factory=list)
    cfg_defaults: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    search: "SearchSpec | None" = None

    def fixed(self) -> dict[str, Any]:
        """Keys every cell sets besides its values: a search's `from` node and epoch."""
        start = self.search.start_from if self.search is not None else None
        if not start:
            return {}
        return {"training.init_weights_path": start["node"],
                "training.init_weights_epoch": start["epoch"]}

    def config(self, cell: Cell) -> RunConfig:
        """The cell's run config: the sweep file with its values, in its own run folder."""
        label = f"sweep cell {cell.name}"
        values = {key: (label, value) for key, value in self.fixed().items()}
        values.update({key: (label, value) for key, value in cell.values.items()})
        values["training.seed"] = (label, cell.seed)
        values["experiment"] = (label, cell.name)
        values["experiment_save_loc"] = (label, str(self.folder))
        from ..catalog import load_config  # tasks and torch: not for readers of sweep.json

        cfg = load_config(self.source, None, tuple(self.cfg_defaults), tuple(self.overrides),
                          values, ignore=("sweep",))
        cfg.sweep = {"name": self.name, "cell": cell.name, "seed": cell.seed, **cell.values}
        return cfg


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(_text(v) for v in value)
    return str(value)


def cell_name(values: dict[str, Any], seed: int) -> str:
    """`lr=0.001,num_blocks=4,seed=42`: the last part of each key, unless two keys share it."""
    last = [k.rsplit(".", 1)[-1] for k in values]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(values, last)}
    parts = [f"{short[k]}={_text(v)}" for k, v in values.items()] + [f"seed={seed}"]
    return _UNSAFE.sub("-", ",".join(parts))


def read_sweep(path: Path, cfg_defaults: tuple = (), overrides: tuple = ()) -> Sweep:
    source = str(path)
    table = compose(path, cfg_defaults, overrides).table.get("sweep")
    if not isinstance(table, dict):
        raise ConfigError(source, "sweep", "missing: a sweep file has a [sweep] table with a grid "
                                           "and/or seeds")
    for key in table:
        if key not in SWEEP_KEYS:
            raise ConfigError(source, f"sweep.{key}", f"unknown key{did_you_mean(key, SWEEP_KEYS)}"
                                                      f" (allowed: {', '.join(SWEEP_KEYS)})")
    if "search" in table and "grid" in table:
        raise ConfigError(source, "sweep.search", "a sweep has a grid or a search, not both")
    grid = table.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(source, "sweep.grid", "expected a table of key = [values]")
    for key, options in grid.items():
        if not isinstance(options, list) or not options:
            raise ConfigError(source, f"sweep.grid.{key}", "expected a non-empty list of values")
        if len({repr(o) for o in options}) != len(options):
            raise ConfigError(source, f"sweep.grid.{key}", "expected each value once")
        if key.split(".")[-1] in ("seed", "experiment", "experiment_save_loc"):
            raise ConfigError(source, f"sweep.grid.{key}", "set by the sweep itself (seeds, "
                                                           "the cell's folder)")
    from ..catalog import load_config

    base = load_config(path, None, cfg_defaults, overrides, ignore=("sweep",))
    if "seeds" in table and "repetitions" in table:
        raise ConfigError(source, "sweep.seeds", "give seeds or repetitions, not both")
    if "seeds" in table:
        seeds = table["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 2**32 - 1
                for s in seeds) or len(set(seeds)) != len(seeds):
            raise ConfigError(source, "sweep.seeds", f"expected a list of distinct integers "
                                                     f"0..2**32-1, got {seeds!r}")
    else:
        reps = table.get("repetitions", 1)
        if not isinstance(reps, int) or isinstance(reps, bool) or not 1 <= reps <= 1000:
            raise ConfigError(source, "sweep.repetitions", f"expected an integer 1..1000, got "
                                                           f"{reps!r}")
        seeds = [base.training.seed + i for i in range(reps)]
    name = table.get("name", base.experiment)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(source, "sweep.name", f"expected a plain folder name, got {name!r}")
    sweep = Sweep(Path(path).resolve(), Path(base.experiment_save_loc) / name, name, grid, seeds,
                  cfg_defaults=[str(Path(d).resolve()) for d in cfg_defaults],
                  overrides=list(overrides))
    if "search" in table:
        return _with_search(sweep, table["search"], base)
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        values = dict(zip(keys, combo))
        for seed in seeds:
            sweep.cells.append(Cell(cell_name(values, seed), values, seed))
    names = [c.name for c in sweep.cells]
    if len(set(names)) != len(names):
        raise ConfigError(source, "sweep.grid", "two cells would share a folder name; make the "
                                                "values differ in their text")
    for cell in sweep.cells:  # every cell's config is valid before anything runs
        _check_cell(sweep, cell)
    return sweep


def _check_cell(sweep: Sweep, cell: Cell) -> RunConfig:
    from ..training.setup import check_semantics

    cfg = sweep.config(cell)
    if cfg.training.continue_from_epoch is not None or cfg.training.overwrite_data:
        raise ConfigError(str(sweep.source), "training", "a sweep continues and resumes its "
                                                         "cells itself: remove "
                                                         "continue_from_epoch and overwrite_data")
    check_semantics(cfg)
    return cfg


def _with_search(sweep: Sweep, table, base: RunConfig) -> Sweep:
    """A search's spec, and a config for each end of each key's range (and every choice)."""
    from ..core.columns import set_prefix
    from ..training.setup import check_semantics

    task = check_semantics(base)
    # the columns its runs will have (the task's own keys are known only once it has its data)
    columns = ["train-loss"] + [f"{set_prefix(i, name)}{key}"
                                for i, name in enumerate(base.data.eval_sets)
                                for key in ["loss"] + list(base.training.metrics or [])]
    del task
    sweep.search = read_search(str(sweep.source), table, base, columns)
    for values in sample_values(sweep.search) or [{}]:
        key = next(iter(values), "")
        try:
            _check_cell(sweep, Cell("search-space", values, sweep.seeds[0]))
        except ConfigError as exc:
            where = "" if exc.key_path == key else f"{exc.key_path}: "
            raise ConfigError(str(sweep.source), f"sweep.search.space.{key}",
                              f"{values[key]!r}: {where}{exc.message}") from None
    return sweep
