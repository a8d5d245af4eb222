"""Layered configs. A TOML may start from others (`defaults = ["base.toml"]`, relative to it;
they may have defaults of their own), `--cfg-default FILE` puts files beneath the whole chain,
and `section.key=value` arguments override single keys. Tables are deep-merged, later wins,
lists are replaced. Every leaf key remembers where it was set, so an error names that file or
override, and a relative path resolves against the folder of the file that set it."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import ConfigError

DEFAULTS_KEY = "defaults"


@dataclass
class Composed:
    table: dict = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # dotted key -> file or override
    bases: dict[str, Path] = field(default_factory=dict)   # dotted key -> folder for its paths
    chain: list[str] = field(default_factory=list)         # what was merged, in order

    def merge(self, table: dict, label: str, base: Path, prefix: str = "") -> None:
        _merge(self.table, table, self, label, base, prefix)
        if not self.chain or self.chain[-1] != label:  # a sweep cell's keys: one entry
            self.chain.append(label)

    def origin(self, key_path: str, default: str) -> str:
        """The file or override that set `key_path` (or the table holding it)."""
        parts = key_path.split(".")
        for n in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:n]))
            if found is not None:
                return found
        return default

    def base(self, key_path: str, default: Path) -> Path:
        return self.bases.get(key_path, default)


def _merge(into: dict, table: dict, composed: Composed, label: str, base: Path,
           prefix: str) -> None:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, composed, label, base, dotted + ".")
            continue
        into[key] = value
        for leaf in _leaves(value, dotted):
            composed.origins[leaf] = label
            composed.bases[leaf] = base


def _leaves(value: Any, dotted: str) -> list[str]:
    if isinstance(value, dict) and value:
        return [dotted] + [leaf for k, v in value.items() for leaf in _leaves(v, f"{dotted}.{k}")]
    return [dotted]


def read_toml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "", "is a folder; expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not UTF-8 text ({exc.reason} at byte "
                                         f"{exc.start}); expected a TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"invalid TOML: {exc}") from None


def _layer(path: Path, composed: Composed, stack: tuple[Path, ...]) -> None:
    """`path` after its own defaults, depth first."""
    resolved = path.resolve()
    if resolved in stack:
        cycle = " -> ".join(p.name for p in (*stack, resolved))
        raise ConfigError(str(path), DEFAULTS_KEY, f"the defaults form a cycle: {cycle}")
    table = read_toml(path)
    defaults = table.pop(DEFAULTS_KEY, [])
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(str(path), DEFAULTS_KEY, "expected a list of TOML file paths")
    for default in defaults:
        target = Path(os.path.expanduser(default))
        target = target if target.is_absolute() else (path.parent / target).resolve()
        if not target.is_file():
            raise ConfigError(str(path), DEFAULTS_KEY, f"file not found: {target}")
        _layer(target, composed, (*stack, resolved))
    composed.merge(table, str(path), path.resolve().parent)


def parse_override(text: str) -> tuple[str, Any]:
    """`training.lr=1e-3` -> ("training.lr", 0.001): the value in TOML literal syntax (numbers,
    booleans, "strings", [lists], {tables}); anything else is a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(p.strip() and p == p.strip() for p in parts):
        raise ConfigError(f"override {text}", "", "expected section.key=value, e.g. "
                                                 "training.seed=195 or model.internal_params.lr=2e-4")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return key, value


def flatten(table: dict, prefix: str = "") -> dict:
    """A nested table as dotted keys: {'training': {'lr': 1}} -> {'training.lr': 1}."""
    out = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def nest(key: str, value: Any) -> dict:
    out: dict = {}
    node = out
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def compose(path: Path, cfg_defaults: tuple = (), overrides: tuple = (),
            flags: dict | None = None, values: dict | None = None,
            presets: dict | None = None) -> Composed:
    """The merged table of --cfg-default files < the file's defaults chain < the file <
    `presets` (--dev, --overfit) < CLI flags < `key=value` overrides < `values` (a sweep cell's).
    Presets, flags and values are {key: (label, value)}; they and the overrides resolve paths
    against the working directory."""
    composed = Composed()
    for default in cfg_defaults:
        _layer(Path(default), composed, ())
    _layer(Path(path), composed, ())
    for key, (label, value) in {**(presets or {}), **(flags or {})}.items():
        composed.merge(nest(key, value), label, Path.cwd())
    for text in overrides:
        key, value = parse_override(text)
        composed.merge(nest(key, value), f"override {text}", Path.cwd())
    for key, (label, value) in (values or {}).items():
        composed.merge(nest(key, value), label, Path.cwd())
    return composed
