"""The components a config may name: the registered tasks and dataset kinds, with the plugins
that add more. The config layer is handed this catalog (it imports no task itself); every
entry point (CLI, sweeps, inference, tests) loads configs through `load_config` here."""
from __future__ import annotations

from pathlib import Path

from .config import ConfigError
from .config.load import install_catalog, load_config as _load_config
from .data.kinds import DATASET_KINDS
from .plugins import PluginError, load_entry_points, load_plugins
from .tasks import TASKS
# Modules whose writers declare the files they put in a node (core/declared.py): loaded with
# the catalog, so every command that checks a node knows them.
from . import tracking  # noqa: F401
from .core import run_folder  # noqa: F401


class PackageCatalog:
    kinds = DATASET_KINDS

    def task(self, name: str):
        load_entry_points()
        return TASKS.get(name) if name in TASKS else None

    def task_names(self) -> list[str]:
        load_entry_points()
        return TASKS.names()

    def tasks_using(self, key_path: str) -> list[str]:
        return [t for t in TASKS if key_path in TASKS.get(t).config_defaults]

    def load_plugins(self, specs: list[str], base: Path, origin: str,
                     recorded: dict[str, str]) -> dict[str, str]:
        try:
            return load_plugins(specs, base, recorded)
        except PluginError as exc:
            raise ConfigError(origin, "plugins", str(exc)) from None


CATALOG = PackageCatalog()
install_catalog(CATALOG)


def load_config(*args, **kwargs):
    """rumpy.config.load.load_config with the package's catalog."""
    return _load_config(*args, catalog=CATALOG, **kwargs)
