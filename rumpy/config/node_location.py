"""A node's own config.toml records where its tree was made (an absolute experiment_save_loc),
not where the tree is now. Continuing a copied or moved tree through that file must train the
copy, never the original: when the file given is a node's config.toml, the tree's location comes
from where the file lies."""
from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path

log = logging.getLogger(__name__)

LABEL = "the location of {path}"


def _is_node(folder: Path) -> bool:
    return (folder / "config.toml").is_file() and (folder / "status.json").is_file()


def node_location(path: Path) -> dict[str, tuple[str, object]]:
    """Presets ({key: (label, value)}) placing a run at the tree `path` (a node's config.toml)
    is in: experiment_save_loc, experiment and training.branch_root, and aim_home when it was
    the save location's default. {} for any other file."""
    # not resolved: a link on the way stays visible (and is refused when the run is planned)
    folder = Path(os.path.abspath(path)).parent
    if path.name != "config.toml" or not _is_node(folder):
        return {}
    root, rel = folder, []
    while _is_node(root.parent):
        rel.insert(0, root.name)
        root = root.parent
    try:
        stored = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # the loader reports the file's problem itself
    name, loc = stored.get("experiment"), stored.get("experiment_save_loc")
    parts = name.split("/") if isinstance(name, str) and name else []
    if parts and list(root.parts[-len(parts):]) == parts:  # "edsr/seed42" kept as it was
        here = Path(*root.parts[:-len(parts)])
    else:  # the run folder was renamed: its name now is its folder's
        name, here = root.name, root.parent
    label = LABEL.format(path=path)
    presets = {"experiment_save_loc": (label, str(here)), "experiment": (label, name),
               "training.branch_root": (label, "/".join(rel))}
    training = stored.get("training") if isinstance(stored.get("training"), dict) else {}
    if isinstance(loc, str) and training.get("aim_home") in (loc, None, ""):
        presets["training.aim_home"] = (label, str(here))
    if isinstance(loc, str) and Path(loc) != here:
        log.info("%s was made in %s; this tree is now at %s: training here", path, loc, here)
    return presets
