"""TOML -> typed RunConfig. Every problem is a one-line ConfigError naming the file, the key path
and what was expected, raised before anything is written."""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Protocol

from ..registry import did_you_mean
from ..utils.names import MAX_BYTES, name_problem
from .compose import Composed, compose, read_toml
from .errors import ConfigError
from .legacy import log_notes, translate
from .node_location import node_location
from .periods import EPOCH_KEYS, resolve_periods, step_based
from .placeholders import expand_placeholders
from .schema import RunConfig

# CLI flag -> dotted key path; a flag overrides the TOML only when it is given.
CLI_OVERRIDES = {
    "experiment_name": "experiment",
    "save_loc": "experiment_save_loc",
    "gpu": "training.gpu",
    "sp_gpu": "training.sp_gpu",
    "num_epochs": "training.num_epochs",
    "num_iterations": "training.num_iterations",
    "continue_from_step": "training.continue_from_step",
    "seed": "training.seed",
    "continue_from_epoch": "training.continue_from_epoch",
    "branch_root": "training.branch_root",
    "new_branch": "training.new_branch",
    "new_branch_name": "training.new_branch_name",
    "overwrite_data": "training.overwrite_data",
    "skip_optimizer_load": "training.skip_optimizer_load",
    "skip_scheduler_load": "training.skip_scheduler_load",
    "early_stopping_patience": "training.early_stopping_patience",
}


def _members(hint: Any) -> tuple:
    """The non-None members of a union hint (`int | str | None`), or () for other hints."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(hint) if a is not type(None))
    return ()


def _plain(hint: Any) -> Any:
    """`int | None` (a key only some tasks use) is checked as `int`."""
    members = _members(hint)
    return members[0] if len(members) == 1 else hint


def _describe(hint: Any) -> str:
    if _members(hint):
        return " or ".join(_describe(m) for m in _members(hint))
    origin = typing.get_origin(hint)
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "a string"
    if origin is list:
        return "a list of " + ("integers" if typing.get_args(hint) == (int,) else "strings")
    if hint is dict or origin is dict:
        return "a table"
    return "a table"


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


class _Problem(Exception):
    """A key the builder could not take; recorded, and the build goes on with the next key."""


class _Builder:
    """Builds the typed config, collecting every problem (unknown key, wrong type, bad value)
    instead of stopping at the first, so one run of the command shows them all."""

    def __init__(self, source: str, task: "TaskSpec", catalog: "Catalog", composed: Composed):
        self.source = source
        self.spec = task
        self.task = task.name
        self.scopes = task_scopes(task)
        self.defaults = dict(task.config_defaults)
        self.catalog = catalog
        self.kinds = catalog.kinds
        self.default_kind = task.dataset_kinds[0] if task.dataset_kinds else ""
        self.composed = composed
        self.problems: list[ConfigError] = []

    def fail(self, key_path: str, message: str) -> typing.NoReturn:
        """An error names the file (or override) that set the key."""
        self.problems.append(ConfigError(self.composed.origin(key_path, self.source), key_path,
                                         message))
        raise _Problem

    def value(self, hint: Any, value: Any, key_path: str, meta: dict) -> Any:
        hint = _plain(hint)
        origin = typing.get_origin(hint)
        expected = _describe(hint)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                self.fail(key_path, f"expected a table, got {_type_name(value)}")
            return self.build(hint, value, key_path)
        if origin is dict and dataclasses.is_dataclass(typing.get_args(hint)[1]):
            if not isinstance(value, dict):
                self.fail(key_path, f"expected a table of tables, got {_type_name(value)}")
            out = {}
            for name, table in value.items():
                try:
                    if not isinstance(table, dict):
                        self.fail(f"{key_path}.{name}",
                                  f"expected a table, got {_type_name(table)}")
                    item_cls = (self.dataset_class(table, meta["role"], f"{key_path}.{name}")
                                if meta.get("role") else typing.get_args(hint)[1])
                except _Problem:
                    continue
                out[name] = self.build(item_cls, table, f"{key_path}.{name}")
            return out
        if _members(hint):
            if not any(self._matches(m, value) for m in _members(hint)):
                self.fail(key_path, f"expected {expected}, got {_type_name(value)} {value!r}")
            problem = meta.get("check") and meta["check"](value)
            if problem:
                self.fail(key_path, problem)
            return value
        if not self._matches(hint, value):
            self.fail(key_path, f"expected {expected}, got {_type_name(value)} {value!r}")
        if origin is list:  # names of metrics, columns, targets: a repeat is a slip (export
            # would silently keep one of two same-named targets)
            seen = set()
            for item in value:
                if item in seen:
                    self.fail(key_path, f"lists {item!r} twice; expected each "
                                        f"{'index' if isinstance(item, int) else 'name'} once")
                seen.add(item)
        if hint is float:
            value = float(value)
        choices = meta.get("choices") or ()
        if choices and value not in choices:
            self.fail(key_path, f"expected one of {', '.join(map(repr, choices))}, got {value!r}"
                                f"{did_you_mean(str(value), list(choices))}")
        if hint is float and not math.isfinite(value):
            self.fail(key_path, f"expected a finite number, got {value!r}")
        minimum, maximum = meta.get("minimum"), meta.get("maximum")
        if minimum is not None and value < minimum:
            self.fail(key_path, f"expected {expected} >= {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            self.fail(key_path, f"expected {expected} <= {maximum:g}, got {value!r}")
        return value

    @staticmethod
    def _matches(hint: Any, value: Any) -> bool:
        origin = typing.get_origin(hint)
        return (
            (hint is bool and isinstance(value, bool))
            or (hint is int and isinstance(value, int) and not isinstance(value, bool))
            or (hint is float and isinstance(value, (int, float)) and not isinstance(value, bool))
            or (hint is str and isinstance(value, str))
            or (origin is list and isinstance(value, list) and
                all(_Builder._matches(typing.get_args(hint)[0], v) for v in value))
            or ((hint is dict or origin is dict) and isinstance(value, dict))
        )

    def dataset_class(self, table: dict, role: str, key_path: str) -> type:
        """The config class of a data set table, from its `type` (the task's default kind when
        absent); a kind that feeds other tasks is refused here."""
        kinds = self.kinds
        name = table.get("type", self.default_kind)
        if not isinstance(name, str):
            self.fail(f"{key_path}.type", f"expected a string, got {_type_name(name)}")
        mine = kinds.names(self.scopes)
        if name.lower() not in kinds:
            self.fail(f"{key_path}.type", f"unknown dataset type {name!r}{did_you_mean(name, mine)} "
                                          f"(task {self.task!r} reads: {', '.join(mine)})")
        if not kinds.serves(name, self.scopes):
            feeds = sorted({t for scopes, _, _ in kinds.all(name) for t in scopes or ()})
            tasks = [t for t in feeds if t in self.catalog.task_names()]
            families = [f for f in feeds if f not in tasks]
            also = f" and {'/'.join(families)} tasks" if families else ""
            self.fail(f"{key_path}.type", f"dataset type {name!r} feeds task "
                                          f"{'/'.join(map(repr, tasks))}{also}, not "
                                          f"{self.task!r} (task {self.task!r} reads: "
                                          f"{', '.join(mine)})")
        found = kinds.get(name, self.scopes)
        table["type"] = found.name
        return found.train_config if role == "train" else found.eval_config

    def build(self, cls: type, table: dict, key_path: str) -> Any:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        extra = {}
        for key in table:
            if key not in fields:
                if "arch" in cls.__dataclass_fields__:  # the architecture's own keys, checked
                    # by the model
                    extra[key] = table[key]
                    continue
                where = f"{key_path}.{key}" if key_path else key
                try:
                    self.fail(where, f"unknown key{did_you_mean(key, list(fields))} "
                                     f"(allowed: {', '.join(fields)})")
                except _Problem:
                    continue
        kwargs = {}
        for name, f in fields.items():
            where = f"{key_path}.{name}" if key_path else name
            per_task = f.metadata.get("per_task")
            if name in table:
                try:
                    if per_task and where not in self.defaults:
                        users = ", ".join(repr(t) for t in self.catalog.tasks_using(where))
                        self.fail(where, f"not used by task {self.task!r} (only by "
                                         f"{users or 'no task'}); remove it")
                    kwargs[name] = self.value(hints[name], table[name], where, dict(f.metadata))
                    continue
                except _Problem:  # recorded; the default stands in so the build goes on
                    pass
            if dataclasses.is_dataclass(_plain(hints[name])) and not per_task:  # an absent
                # section: its defaults (a per_task section stays unset)
                kwargs[name] = self.build(_plain(hints[name]), {}, where)
            elif per_task and where in self.defaults:
                default = self.defaults[where]
                kwargs[name] = type(default)(default) if isinstance(default, (list, dict)) else default
        obj = cls(**kwargs)
        if "arch" in cls.__dataclass_fields__:
            obj.arch = extra
        return obj


def _resolve(path: str, base: Path) -> str:
    expanded = Path(os.path.expanduser(path))
    return str(expanded if expanded.is_absolute() else (base / expanded).resolve())


def attribute(exc: ConfigError, cfg: RunConfig) -> ConfigError:
    """An error raised against the main file (by the checks after loading) names the file or
    override that actually set its key."""
    if exc.source != cfg.source or not exc.key_path or not cfg.origins:
        return exc
    parts = exc.key_path.split(".")
    for n in range(len(parts), 0, -1):
        label = cfg.origins.get(".".join(parts[:n]))
        if label is not None:
            return exc if label == exc.source else ConfigError(label, exc.key_path, exc.message)
    return exc


class TaskSpec(Protocol):
    """What the loader needs of a task; the task classes (rumpy/tasks) have these."""

    name: str
    families: tuple[str, ...]
    dataset_kinds: tuple[str, ...]      # the first is a data table's default `type`
    config_defaults: dict[str, Any]     # key path -> default, for the per_task keys it uses

    def model_name_problem(self, name: str) -> str | None: ...


class Catalog(Protocol):
    """The components a config may name, handed to the loader by the layer above (the config
    layer imports no task, dataset kind or model): rumpy/catalog.py."""

    kinds: Any  # the dataset kinds' registry

    def task(self, name: str) -> TaskSpec | None: ...
    def task_names(self) -> list[str]: ...
    def tasks_using(self, key_path: str) -> list[str]: ...
    def load_plugins(self, specs: list[str], base: Path, origin: str,
                     recorded: dict[str, str]) -> dict[str, str]: ...


_INSTALLED: list[Catalog] = []


def install_catalog(catalog: Catalog) -> None:
    """The layer above installs the package's catalog once (rumpy/catalog.py does on import);
    readers of stored configs below it (the tree) then need not import the tasks."""
    _INSTALLED[:] = [catalog]


def installed_catalog() -> Catalog:
    if not _INSTALLED:
        raise RuntimeError("no component catalog: import rumpy.catalog (it loads the tasks, "
                           "dataset kinds and plugins configs name) before loading a config")
    return _INSTALLED[0]


def task_scopes(task: TaskSpec) -> tuple[str, ...]:
    """The registry scopes a task looks names up in: its name and its families."""
    return (task.name, *getattr(task, "families", ()))


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                cfg_defaults: tuple = (), key_overrides: tuple = (),
                values: dict[str, tuple[str, Any]] | None = None,
                ignore: tuple[str, ...] = (),
                presets: dict[str, tuple[str, Any]] | None = None,
                *, catalog: Catalog | None = None) -> RunConfig:
    """Compose (the file's defaults chain under it, --cfg-default files under that, then
    `section.key=value` overrides and CLI flags on top), import its plugins, type-check and
    resolve paths. Semantic checks that need the registries (model parameters, data folders)
    happen when the run is built. `values` ({key: (label, value)}) set keys last (a sweep
    cell's); top-level tables named in `ignore` are not part of the run's config (a sweep
    file's [sweep])."""
    catalog = catalog or installed_catalog()
    path = Path(path)
    flags = {CLI_OVERRIDES[flag]: (f"--{flag}", value) for flag, value in (overrides or {}).items()
             if value is not None}
    presets = {**node_location(path), **(presets or {})}  # --dev's save location wins
    composed = compose(path, tuple(cfg_defaults), tuple(key_overrides), flags, values, presets)
    raw = composed.table
    for name in ignore:
        raw.pop(name, None)
    legacy = translate(raw, composed.origins)
    source = str(path)
    toml_dir = path.resolve().parent
    sha256 = _plugins(raw, composed, source, toml_dir, catalog)
    task = raw.get("task", RunConfig.task)
    if not isinstance(task, str):
        raise ConfigError(composed.origin("task", source), "task",
                          f"expected a string, got {_type_name(task)}")
    spec = catalog.task(task.lower())
    if spec is None:
        names = catalog.task_names()
        raise ConfigError(composed.origin("task", source), "task",
                          f"unknown task {task!r}{did_you_mean(task, names)} "
                          f"(registered: {', '.join(names)})")
    task = raw["task"] = task.lower()
    builder = _Builder(source, spec, catalog, composed)
    for key_path, message in legacy.problems:
        builder.problems.append(ConfigError(composed.origin(key_path, source), key_path, message))
    cfg: RunConfig = builder.build(RunConfig, raw, "")
    if builder.problems and isinstance(cfg.model.name, str) and cfg.model.name:
        problem = spec.model_name_problem(cfg.model.name)  # in the report of every problem
        if problem:
            builder.problems.append(ConfigError(composed.origin("model.name", source),
                                                "model.name", problem))
    if builder.problems:
        raise ConfigError.report(builder.problems)
    cfg.source = source
    cfg.origins = dict(composed.origins)
    cfg.chain = [c for c in composed.chain if not c.startswith("--")]
    cfg.plugins = list(sha256)
    cfg.plugin_sha256 = {k: v for k, v in sha256.items() if v}
    log_notes(legacy.notes)
    try:
        return _finish(cfg, composed, source, toml_dir)
    except ConfigError as exc:
        raise attribute(exc, cfg) from None


def _plugins(raw: dict, composed: Composed, source: str, toml_dir: Path,
             catalog: Catalog) -> dict[str, str]:
    """Imports the config's plugins before anything is typed (they may add the very task,
    model or dataset kind it names). Returns {plugin: sha256 of its file, '' for a module}."""
    specs = raw.get("plugins", [])
    origin = composed.origin("plugins", source)
    if not isinstance(specs, list) or not all(isinstance(p, str) and p.strip() for p in specs):
        raise ConfigError(origin, "plugins", f"expected a list of file paths or module names, "
                                             f"got {specs!r}")
    recorded = raw.pop("plugin_sha256", {})
    if not isinstance(recorded, dict):
        raise ConfigError(origin, "plugin_sha256", "expected a table of file -> sha256")
    loaded = catalog.load_plugins(specs, composed.base("plugins", toml_dir), origin, recorded)
    raw["plugins"] = list(loaded)
    return loaded


def _finish(cfg: RunConfig, composed: Composed, source: str, toml_dir: Path) -> RunConfig:
    """Placeholders, names and paths of a built config."""
    expand_placeholders(cfg, composed.origin("experiment", source))

    name = cfg.experiment
    if not name:
        raise ConfigError(source, "experiment", "missing: give the run a name "
                                                "(or pass --experiment_name)")
    # "edsr/seed42" (a name/version layout) is a folder inside a folder, never outside
    problem = next((name_problem(part) for part in name.split("/") if name_problem(part)), None)
    if problem or len(name.encode("utf-8", "replace")) > MAX_BYTES:
        raise ConfigError(source, "experiment", problem or f"expected a name of at most "
                                                           f"{MAX_BYTES} bytes, got "
                                                           f"{len(name.encode())}")
    for key, value in (("experiment_save_loc", cfg.experiment_save_loc),
                       ("data.cache_dir", cfg.data.cache_dir)):
        if not value.strip():  # '' would silently mean the TOML's own folder
            raise ConfigError(source, key, f"expected a folder, got {value!r}")
        if "\0" in value:
            raise ConfigError(source, key, f"expected a folder path, got {value!r} (a NUL byte)")
    if not cfg.model.name:
        raise ConfigError(source, "model.name", "missing: name a registered model")

    # A relative path resolves against the folder of the file that set it; CLI values against
    # the working directory, and so does the default save location.
    cfg.experiment_save_loc = _resolve(
        cfg.experiment_save_loc, composed.base("experiment_save_loc", Path.cwd()))
    for key, obj in (("data.cache_dir", cfg.data), ("training.aim_home", cfg.training),
                     ("training.init_weights_path", cfg.training)):
        name = key.split(".")[1]
        if getattr(obj, name):
            setattr(obj, name, _resolve(getattr(obj, name), composed.base(key, toml_dir)))
    # One Aim repository for every experiment saved in the same place, unless told otherwise.
    cfg.training.aim_home = cfg.training.aim_home or cfg.experiment_save_loc
    for section in ("training_sets", "eval_sets"):
        for set_name, ds in getattr(cfg.data, section).items():
            ds.name = ds.name or set_name
            if section == "eval_sets" and ds.test_indices:
                raise ConfigError(source, f"data.eval_sets.{set_name}.test_indices",
                                  "only a training set holds samples out (as its own eval set)")
            for f in dataclasses.fields(ds):
                if f.metadata.get("path") and getattr(ds, f.name):
                    base = composed.base(f"data.{section}.{set_name}.{f.name}", toml_dir)
                    setattr(ds, f.name, _resolve(getattr(ds, f.name), base))
            if section == "eval_sets" and getattr(ds, "random_augment", False):
                raise ConfigError(source, f"data.eval_sets.{set_name}.random_augment",
                                  "expected false: validation images are never augmented")
    if not cfg.data.training_sets:
        raise ConfigError(source, "data.training_sets",
                          "missing: add at least one [data.training_sets.NAME] table")
    resolve_periods(cfg)
    return cfg


def to_toml_dict(cfg: RunConfig) -> dict:
    """The resolved config as a TOML table (architecture keys back inside internal_params),
    without the action keys: it defines the run, not what to do with it."""
    def convert(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            out = {}
            for f in dataclasses.fields(obj):
                if f.metadata.get("internal") or f.metadata.get("action"):
                    continue
                if getattr(obj, f.name) is None:  # a key this task does not use
                    continue
                out[f.name] = convert(getattr(obj, f.name))
            if "arch" in obj.__dataclass_fields__:
                out.update(convert(obj.arch))
            return out
        if isinstance(obj, dict):
            return {k: convert(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [convert(v) for v in obj]
        return obj

    table = convert(cfg)
    if step_based(cfg.training):  # set from the step keys, so not part of what defines the run
        for key in EPOCH_KEYS:
            table["training"].pop(key, None)
    # Plain keys before sub-tables, so the file reads top-down like the example configs.
    head = ["experiment", "experiment_save_loc", "task"]
    if cfg.plugins:  # the node records its plugins, and each file's hash, to find them again
        head.append("plugins")
        if cfg.plugin_sha256:
            table["plugin_sha256"] = dict(cfg.plugin_sha256)
            head.append("plugin_sha256")
    return {k: table[k] for k in head + ["training", "model", "data"]}


def config_text(cfg: RunConfig) -> str:
    """A run's config.toml: the resolved config, headed by the files and overrides it was
    composed from (a comment: what the run is, not how it was written, defines it)."""
    import tomli_w

    chain = [" ".join(c.split()) for c in cfg.chain]
    head = "# composed from (later wins): " + " < ".join(chain) + "\n" if len(chain) > 1 else ""
    return head + tomli_w.dumps(to_toml_dict(cfg))


def stored_config(path: Path) -> dict:
    """A node's config.toml as today's code resolves it: keys added since it was written get
    their defaults, so an old run compares equal to the same config written now."""
    try:
        return to_toml_dict(load_config(path))
    except ConfigError:
        return read_toml(path)
