"""Plugins: the user's own models, losses, metrics, dataset kinds, degradations, trackers and
tasks, registered through the same registries the package uses (`from rumpy.models import
MODELS`, ...). Code runs only when asked for: a config's top-level `plugins = ["my_models.py",
"mylab.losses"]` (files relative to the TOML, or importable module names), or an installed
package's entry point in the group `rumpy.plugins`. Nothing a config names is imported otherwise.

A node records its plugins and each file's sha256 in config.toml, so eval, export, extract, sweep,
a continue or a fork find them again; a recorded file that is gone is an error, one that changed
is a warning."""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

GROUP = "rumpy.plugins"
# The plugin being imported: registries record it as the origin of what it registers.
LOADING: str | None = None

_files: dict[Path, str] = {}     # plugin files imported in this process -> their sha256 then
_entry_points_loaded = False


class PluginError(ValueError):
    """A plugin that cannot be found or imported: one line naming it."""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run(label: str, load) -> None:
    global LOADING
    LOADING = label
    try:
        load()
    except PluginError:
        raise
    except (Exception, SystemExit) as exc:  # whatever the user's code raises, named in one line
        raise PluginError(f"plugin {label!r} failed to import: {_first_line(exc)}") from None
    finally:
        LOADING = None


def _import_file(path: Path) -> str:
    sha = sha256_of(path)
    if path in _files:  # once per process: a second import would register everything twice
        if _files[path] != sha:
            log.warning("plugin %s changed since this process imported it; the imported "
                        "version is used", path)
        return sha
    name = f"rumpy_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)

    def load():
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent))  # its own helper modules beside it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        finally:
            sys.path.remove(str(path.parent))

    _run(str(path), load)
    _files[path] = sha
    return sha


def _import_module(name: str) -> None:
    if name in sys.modules:
        return

    def load():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                raise PluginError(f"plugin {name!r}: no module of this name (a file needs a "
                                  f"path ending in .py, relative to the TOML)") from None
            raise

    _run(name, load)


def load_plugins(specs: list[str], base: Path, recorded: dict[str, str] | None = None
                 ) -> dict[str, str]:
    """Imports each plugin once per process. Returns {file path (absolute) or module name:
    sha256 of the file ('' for a module)}. `recorded`: the hashes a node's config.toml holds,
    checked against the files now."""
    recorded = recorded or {}
    load_entry_points()
    out: dict[str, str] = {}
    for spec in specs:
        if is_file_spec(spec):
            path = (base / Path(spec).expanduser()).resolve()
            if not path.is_file():
                was = " (the node was trained with it)" if str(path) in recorded else ""
                raise PluginError(f"plugin file {path} does not exist{was}")
            sha = _import_file(path)
            before = recorded.get(str(path))
            if before and before != sha:
                log.warning("plugin %s changed since the node was trained with it (sha256 %s... "
                            "now %s...); its current code is used", path, before[:12], sha[:12])
            out[str(path)] = sha
        else:
            _import_module(spec)
            out[spec] = ""
    return out


def load_entry_points() -> list[str]:
    """Installed packages' plugins (entry point group `rumpy.plugins`), imported once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    names = []
    for point in importlib.metadata.entry_points(group=GROUP):
        _run(f"{point.name} ({point.value})", point.load)
        names.append(point.name)
    return names
