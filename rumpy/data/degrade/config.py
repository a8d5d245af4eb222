"""A degradation pipeline from the original tool's TOML layout (`pipeline = [[op, id], ...]`, a
`[deg_configs.<id>]` table per step, `scale`, `seed`, `multiples`, `recursive`,
`output_extension`, `source_dir`, `output_dir`) or from the short `a-b-c` form with defaults.
Every problem is a one-line ConfigError naming the file and key, found before anything runs."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config.errors import ConfigError
from ...registry import did_you_mean
from . import blur, compress, noise, resample, video  # noqa: F401  (register the operations)
from .base import Operation
from .compress import refusal
from .registry import ALIASES, DEGRADATIONS

TOP_KEYS = {"pipeline": None, "deg_configs": {}, "scale": 4, "seed": 8, "multiples": 1,
            "recursive": False, "output_extension": ".png", "source_dir": "", "output_dir": "",
            "override_cli": False}
IMAGE_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")


@dataclass
class Step:
    index: int
    name: str        # the operation's registered name
    config_id: str   # its [deg_configs.<id>] table
    op: Operation

    def column(self, key: str) -> str:
        return f"{self.index}-{self.name}-{key}"  # the original tool's CSV column names


@dataclass
class Pipeline:
    source: str
    steps: list[Step]
    scale: int
    seed: int
    multiples: int
    recursive: bool
    output_extension: str
    hr: Path | None = None
    out: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def columns(self) -> list[str]:
        return [s.column(k) for s in self.steps for k in s.op.columns]

    def resolved(self) -> dict[str, Any]:
        """The pipeline as degradation_config.toml records it: every option resolved."""
        return {"pipeline": [[s.name, s.config_id] for s in self.steps], "scale": self.scale,
                "seed": self.seed, "multiples": self.multiples, "recursive": self.recursive,
                "output_extension": self.output_extension,
                "source_dir": str(self.hr or ""), "output_dir": str(self.out or ""),
                "deg_configs": {s.config_id: s.op.resolved() for s in self.steps}}


def _expect(source: str, key: str, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(source, key, f"expected {what}, got {value!r}")
    return value


def read_pipeline(config: Path | None = None, short: str | None = None,
                  overrides: dict[str, Any] | None = None) -> Pipeline:
    """`config` (a TOML in the original layout) and/or `short` ('blur-downsample'); `overrides`
    (the command line: hr, out, scale, seed, multiples, recursive, output_extension) win over
    the file."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    source = str(config) if config else "--pipeline"
    data: dict[str, Any] = {}
    if config is not None:
        try:
            data = tomllib.loads(Path(config).read_text())
        except FileNotFoundError:
            raise ConfigError(source, "", "no such pipeline config file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(source, key, f"unknown key{did_you_mean(key, list(TOP_KEYS))} "
                                           f"(keys: {', '.join(sorted(TOP_KEYS))})")
    if short:
        data["pipeline"] = short.split("-")
    if not data.get("pipeline"):
        raise ConfigError(source, "pipeline", "expected a pipeline: --pipeline a-b-c or "
                                              "pipeline = [[\"op\", \"id\"], ...] in the file")
    top = {**TOP_KEYS, **data}
    for key in ("scale", "seed", "multiples"):
        top[key] = overrides.get(key, top[key])
        _expect(source, key, top[key], int, "an integer")
    if top["scale"] < 1 or top["multiples"] < 1:
        key = "scale" if top["scale"] < 1 else "multiples"
        raise ConfigError(source, key, f"expected a positive integer, got {top[key]}")
    if not 0 <= top["seed"] < 2**32:
        raise ConfigError(source, "seed", f"expected an integer from 0 to 2**32 - 1, got "
                                          f"{top['seed']}")
    top["recursive"] = overrides.get("recursive", top["recursive"])
    _expect(source, "recursive", top["recursive"], bool, "true or false")
    ext = overrides.get("output_extension", top["output_extension"])
    _expect(source, "output_extension", ext, str, "a file extension")
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext.lower() not in IMAGE_EXTENSIONS:
        raise ConfigError(source, "output_extension",
                          f"expected a lossless format ({', '.join(IMAGE_EXTENSIONS)}), got "
                          f"{ext!r}; compress with a 'jpegcompress' step instead")
    configs = _expect(source, "deg_configs", top["deg_configs"], dict, "a table of step tables")
    steps = _steps(source, top["pipeline"], configs, top["scale"])
    base = Path(config).resolve().parent if config else Path.cwd()
    folders = {}
    for key, flag, name in (("source_dir", "hr", "--hr"), ("output_dir", "out", "--out")):
        value = overrides.get(flag) or top[key]
        if not value:
            raise ConfigError(source, key, f"expected a folder: {name} DIR or {key} in the file")
        folders[flag] = (base / Path(str(value)).expanduser()).resolve() if not overrides.get(
            flag) else Path(value).expanduser().resolve()
    return Pipeline(source, steps, top["scale"], top["seed"], top["multiples"], top["recursive"],
                    ext, folders["hr"], folders["out"])


def steps_from_table(source: str, table: dict, scale: int) -> list[Step]:
    """The steps of a `degradations` table (online degradation: `pipeline` and `deg_configs`;
    the scale is the model's, the seed the run's); key paths relative to the table."""
    for key in table:
        if key not in ("pipeline", "deg_configs"):
            raise ConfigError(source, key, f"unknown key{did_you_mean(key, ['pipeline', 'deg_configs'])}"
                                           f" (online degradations take pipeline and deg_configs; "
                                           f"the scale is the model's, the seed the run's)")
    if not table.get("pipeline"):
        raise ConfigError(source, "pipeline", "expected pipeline = [[\"op\", \"id\"], ...]")
    configs = _expect(source, "deg_configs", table.get("deg_configs", {}), dict,
                      "a table of step tables")
    return _steps(source, table["pipeline"], configs, scale)


def _steps(source: str, pipeline: Any, configs: dict, scale: int) -> list[Step]:
    if not isinstance(pipeline, list):
        raise ConfigError(source, "pipeline", f"expected a list of [operation, id] pairs, got "
                                              f"{pipeline!r}")
    steps = []
    for i, entry in enumerate(pipeline):
        where = f"pipeline[{i}]"
        if isinstance(entry, str):
            name, config_id = entry, "default"
        elif (isinstance(entry, list) and len(entry) == 2
              and all(isinstance(e, str) for e in entry)):
            name, config_id = entry
        else:
            raise ConfigError(source, where, f"expected [\"operation\", \"config id\"] or an "
                                             f"operation name, got {entry!r}")
        name = ALIASES.get(name.lower(), name.lower())
        why = refusal(name)
        if why:
            raise ConfigError(source, where, why)
        if name not in DEGRADATIONS:
            raise ConfigError(source, where, f"unknown operation {name!r}"
                                             f"{did_you_mean(name, DEGRADATIONS.names())} "
                                             f"(operations: {', '.join(DEGRADATIONS.names())}; "
                                             f"short names: {', '.join(ALIASES)})")
        if config_id == "default":
            options, table = {}, f"deg_configs.{name}-{i}"
        elif config_id in configs:
            options, table = configs[config_id], f"deg_configs.{config_id}"
            if not isinstance(options, dict):
                raise ConfigError(source, table, f"expected a table of options, got {options!r}")
        else:
            raise ConfigError(source, where, f"no [deg_configs.{config_id}] table"
                                             f"{did_you_mean(config_id, list(configs))} "
                                             f"(use \"default\" for the defaults)")
        cls = DEGRADATIONS.get(name)
        options = dict(options)
        if name in ("downsample", "upsample"):
            if options.get("scale", scale) != scale:
                raise ConfigError(source, f"{table}.scale", f"{options['scale']} differs from the "
                                                            f"pipeline's scale {scale}; set the "
                                                            f"scale once, at the top level")
            options["scale"] = scale
        op = cls(options, scale, source, table)
        steps.append(Step(i, name, config_id if config_id != "default" else f"{name}-{i}", op))
    return steps
