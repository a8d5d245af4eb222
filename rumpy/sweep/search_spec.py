"""A sweep's `[sweep.search]` table: an Optuna study instead of a grid,

    [sweep.search]
    engine = "optuna"
    n_trials = 16
    metric = "val-PSNR"                      # a summary column; its metric gives the direction
    sampler = { name = "tpe", seed = 0, n_startup_trials = 4 }    # or "tpe", "random", ...
    pruner = { name = "median", n_startup_trials = 2 }            # or "none" (default)
    from = "edsr_base@best"                  # optional: fine-tune from a node's epoch
    [sweep.search.space]
    "model.internal_params.lr" = { low = 1e-4, high = 1e-2, log = true }
    "model.internal_params.num_blocks" = { choices = [1, 2, 4] }

Everything is checked here, before anything is written: a bad value is one ConfigError naming
the file and the key path (with a did-you-mean for a misspelt name). Optuna is imported only
when a search is read, so grids need no extra."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..registry import did_you_mean

SEARCH_KEYS = ("engine", "n_trials", "metric", "sampler", "pruner", "space", "from")
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
RANGE_KEYS = ("low", "high", "log", "step")
# Options that take Python objects (callables, samplers, trials): not settable from TOML.
_NOT_FROM_TOML = ("gamma", "weights", "constraints_func", "categorical_distance_func",
                  "search_space", "independent_sampler", "source_trials", "x0")
KEY = "sweep.search"


@dataclass
class SearchSpec:
    n_trials: int
    metric: str                        # the summary column a trial is scored by
    direction: str                     # 'max' or 'min'
    sampler: dict                      # {"name": ..., options}
    pruner: dict                       # {"name": ..., options}
    space: dict[str, dict]             # config key -> {low, high, log, step} or {choices}
    start_from: dict | None = None     # {"node": folder, "epoch": N | 'best' | 'last'}
    raw: dict = field(default_factory=dict)

    def distributions(self) -> dict:
        from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                          IntDistribution)

        out = {}
        for key, spec in self.space.items():
            if "choices" in spec:
                out[key] = CategoricalDistribution(spec["choices"])
            elif _is_int(spec["low"]) and _is_int(spec["high"]) and \
                    _is_int(spec.get("step", 1)):
                out[key] = IntDistribution(spec["low"], spec["high"], log=spec.get("log", False),
                                           step=spec.get("step", 1))
            else:
                out[key] = FloatDistribution(float(spec["low"]), float(spec["high"]),
                                             log=spec.get("log", False), step=spec.get("step"))
        return out

    def grid(self) -> dict[str, list]:
        """The grid sampler's space: choices, or every step of an integer range."""
        out = {}
        for key, dist in self.distributions().items():
            if hasattr(dist, "choices"):
                out[key] = list(dist.choices)
            else:
                out[key] = list(range(dist.low, dist.high + 1, dist.step))
        return out

    def make_sampler(self, seed_offset: int = 0):
        """A fresh sampler; its seed is offset by the number of trials asked so far, so that
        any number of worker processes draw the same sequence as one would (Optuna seeds each
        process's sampler alike otherwise, and two workers would propose the same trial)."""
        import optuna

        options = {k: v for k, v in self.sampler.items() if k != "name"}
        if options.get("seed") is not None:  # an independent stream per (seed, trial)
            import numpy as np

            options["seed"] = int(np.random.SeedSequence(
                [int(options["seed"]), seed_offset]).generate_state(1)[0])
        name = self.sampler["name"]
        if name == "grid":
            return optuna.samplers.GridSampler(self.grid(), **options)
        return _SAMPLER_CLASSES()[name](**options)

    def make_pruner(self):
        import optuna

        options = {k: v for k, v in self.pruner.items() if k != "name"}
        return _PRUNER_CLASSES()[self.pruner["name"]](**options) if \
            self.pruner["name"] != "none" else optuna.pruners.NopPruner()


def _SAMPLER_CLASSES() -> dict:
    import optuna

    return {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "grid": optuna.samplers.GridSampler, "cmaes": optuna.samplers.CmaEsSampler}


def _PRUNER_CLASSES() -> dict:
    import optuna

    return {"median": optuna.pruners.MedianPruner,
            "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
            "hyperband": optuna.pruners.HyperbandPruner}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _named(source: str, key: str, value, names: tuple[str, ...], default: str) -> dict:
    """`sampler = "tpe"` or `sampler = { name = "tpe", seed = 0, ... }` -> {"name": ..., ...}."""
    if value is None:
        value = default
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ConfigError(source, f"{KEY}.{key}", f"expected a name ({', '.join(names)}) or a "
                                                  f"table with a name, got {value!r}")
    name = value["name"].lower()
    if name not in names:
        raise ConfigError(source, f"{KEY}.{key}.name", f"unknown {key} {value['name']!r}"
                                                       f"{did_you_mean(name, list(names))} "
                                                       f"(known: {', '.join(names)})")
    return {**value, "name": name}


def _check_options(source: str, key: str, spec: dict, classes: dict) -> None:
    """The options are the class's own keyword arguments, with numbers and bools as they
    expect; the object must then build (Optuna checks its ranges)."""
    options = {k: v for k, v in spec.items() if k != "name"}
    cls = classes[spec["name"]]
    exclude = _NOT_FROM_TOML + (("search_space",) if spec["name"] == "grid" else ())
    from ..core.optim import check_params  # torch: not for readers of sweep.json

    for name, message in check_params(cls, options, exclude):
        raise ConfigError(source, f"{KEY}.{key}.{name}", message)
    params = inspect.signature(cls.__init__).parameters
    for name, value in options.items():
        default = params[name].default
        if (_is_number(default) or default is None) and value is not None and \
                not _is_number(value) and not isinstance(value, bool):
            raise ConfigError(source, f"{KEY}.{key}.{name}", f"expected a number, got {value!r}")


def _space(source: str, table) -> dict[str, dict]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(source, f"{KEY}.space", "expected a table of key = { low, high } or "
                                                  "{ choices = [...] }")
    out = {}
    for key, spec in table.items():
        where = f"{KEY}.space.{key}"
        if key.split(".")[-1] in ("seed", "experiment", "experiment_save_loc"):
            raise ConfigError(source, where, "set by the sweep itself (seeds, the trial's folder)")
        if not isinstance(spec, dict):
            raise ConfigError(source, where, f"expected {{ low, high }} or {{ choices = [...] }}, "
                                             f"got {spec!r}")
        if "choices" in spec:
            for name in spec:
                if name != "choices":
                    raise ConfigError(source, f"{where}.{name}", "choices take no other keys")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices or not all(
                    isinstance(c, (bool, int, float, str)) for c in choices):
                raise ConfigError(source, f"{where}.choices", f"expected a non-empty list of "
                                                              f"numbers or strings, got "
                                                              f"{choices!r}")
            if len({repr(c) for c in choices}) != len(choices):
                raise ConfigError(source, f"{where}.choices", "expected each value once")
            out[key] = {"choices": choices}
            continue
        for name in spec:
            if name not in RANGE_KEYS:
                raise ConfigError(source, f"{where}.{name}", f"unknown key"
                                  f"{did_you_mean(name, list(RANGE_KEYS) + ['choices'])} "
                                  f"(allowed: low, high, log, step; or choices)")
        for name in ("low", "high"):
            if not _is_number(spec.get(name)):
                raise ConfigError(source, f"{where}.{name}", f"expected a number, got "
                                                             f"{spec.get(name)!r}")
        if not spec["low"] < spec["high"]:
            raise ConfigError(source, f"{where}.high", f"expected more than low ({spec['low']}),"
                                                       f" got {spec['high']}")
        log_scale = spec.get("log", False)
        if not isinstance(log_scale, bool):
            raise ConfigError(source, f"{where}.log", f"expected true or false, got "
                                                      f"{log_scale!r}")
        if log_scale and spec["low"] <= 0:
            raise ConfigError(source, f"{where}.low", "a log scale needs low > 0")
        if "step" in spec:
            if not _is_number(spec["step"]) or spec["step"] <= 0:
                raise ConfigError(source, f"{where}.step", f"expected a number > 0, got "
                                                           f"{spec['step']!r}")
            if log_scale:
                raise ConfigError(source, f"{where}.step", "a log scale takes no step")
        out[key] = dict(spec)
    return out


def _start_from(source: str, value, save_loc: Path) -> dict:
    """`from = "NODE@EPOCH"`: a node folder (relative to experiment_save_loc, or absolute; a
    branch is `run/branch`) and an epoch it has saved (N, best or last)."""
    from ..tree.node import Node

    where = f"{KEY}.from"
    if not isinstance(value, str) or value.count("@") != 1:
        raise ConfigError(source, where, f"expected \"NODE@EPOCH\" (e.g. \"edsr_base@best\"), "
                                         f"got {value!r}")
    name, epoch_text = value.split("@")
    folder = Path(name) if Path(name).is_absolute() else save_loc / name
    if not (folder / "config.toml").is_file():
        siblings = [p.name for p in folder.parent.iterdir()] if folder.parent.is_dir() else []
        raise ConfigError(source, where, f"{folder} is not a run folder"
                                         f"{did_you_mean(folder.name, siblings)}")
    epoch: int | str = epoch_text
    if epoch_text.isdigit():
        epoch = int(epoch_text)
    elif epoch_text not in ("best", "last"):
        raise ConfigError(source, where, f"expected an epoch number, best or last after @, got "
                                         f"{epoch_text!r}")
    node = Node(folder, "")
    saved = node.saved_epochs()
    if not saved:
        raise ConfigError(source, where, f"{folder} has no saved epoch yet")
    if isinstance(epoch, int) and epoch not in saved:
        raise ConfigError(source, where, f"{folder} has no checkpoint of epoch {epoch} (saved: "
                                         f"{', '.join(map(str, saved))})")
    return {"node": str(folder.resolve()), "epoch": epoch}


def read_search(source: str, table, base, columns: list[str]) -> SearchSpec:
    """`base` is the sweep file's own run config; `columns` the summary columns its runs
    will have (for the metric's did-you-mean)."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError(source, KEY, "needs Optuna: pip install -c constraints.txt -e "
                                       "\".[search]\"") from None
    if not isinstance(table, dict):
        raise ConfigError(source, KEY, "expected a table")
    for key in table:
        if key not in SEARCH_KEYS:
            raise ConfigError(source, f"{KEY}.{key}", f"unknown key"
                                                      f"{did_you_mean(key, list(SEARCH_KEYS))} "
                                                      f"(allowed: {', '.join(SEARCH_KEYS)})")
    engine = table.get("engine", "optuna")
    if engine != "optuna":
        raise ConfigError(source, f"{KEY}.engine", f"expected \"optuna\", got {engine!r}")
    n_trials = table.get("n_trials")
    if not _is_int(n_trials) or not 1 <= n_trials <= 100_000:
        raise ConfigError(source, f"{KEY}.n_trials", f"expected an integer 1..100000, got "
                                                     f"{n_trials!r}")
    metric = table.get("metric", base.training.best_load_metric)
    if not isinstance(metric, str):
        raise ConfigError(source, f"{KEY}.metric", f"expected a summary column, got {metric!r}")
    from ..core.columns import direction, resolve

    metric = resolve(metric, columns)
    if direction(metric) is None or not metric.startswith(("val-", "train-loss")):
        shown = [c for c in columns if c.startswith("val-") or c == "train-loss"]
        raise ConfigError(source, f"{KEY}.metric", f"no summary column {metric!r}"
                                                   f"{did_you_mean(metric, shown)} (columns: "
                                                   f"{', '.join(shown)})")
    sampler = _named(source, "sampler", table.get("sampler"), SAMPLERS, "tpe")
    pruner = _named(source, "pruner", table.get("pruner"), PRUNERS, "none")
    _check_options(source, "sampler", sampler, _SAMPLER_CLASSES())
    if pruner["name"] != "none":
        _check_options(source, "pruner", pruner, _PRUNER_CLASSES())
    spec = SearchSpec(n_trials, metric, direction(metric), sampler, pruner,
                      _space(source, table.get("space")), raw=dict(table))
    if sampler["name"] == "grid":
        for key, dist in spec.space.items():
            if "choices" not in dist and not (_is_int(dist["low"]) and _is_int(dist["high"])
                                              and _is_int(dist.get("step", 1))):
                raise ConfigError(source, f"{KEY}.space.{key}", "the grid sampler needs choices "
                                                                "or an integer range")
    for key, name in (("sampler", "sampler"), ("pruner", "pruner")):
        try:
            spec.make_sampler() if key == "sampler" else spec.make_pruner()
        except (TypeError, ValueError) as exc:
            raise ConfigError(source, f"{KEY}.{name}", " ".join(str(exc).split())[:300]) from None
    if "from" in table:
        spec.start_from = _start_from(source, table["from"], Path(base.experiment_save_loc))
    return spec


def sample_values(spec: SearchSpec) -> list[dict[str, Any]]:
    """Values that span the space (each end, every choice): each is checked as a config before
    the search starts, as a grid checks its cells."""
    out = []
    for key, dist in spec.space.items():
        ends = dist["choices"] if "choices" in dist else [dist["low"], dist["high"]]
        out += [{key: v} for v in ends]
    return out
