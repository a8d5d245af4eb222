"""Whether rumpy can write in a folder that may not exist yet, found out before anything is
written: the nearest existing ancestor must be a folder, and making a folder in it must work."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_problem(path: Path, try_writing: bool = True) -> str | None:
    """Why `path` cannot be (or become) a folder to write in, or None. With `try_writing`, an
    empty folder is made in the nearest existing one and removed at once: permission bits say
    nothing under /proc, on a read-only mount, or to root."""
    existing = nearest_existing(path)
    if not existing.is_dir():
        return (f"{existing} is a file, not a folder" if existing == path
                else f"{existing} is a file, so {path} cannot be a folder")
    if not try_writing:
        return None
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rumpy-probe-", dir=existing))
    except OSError as exc:
        where = "" if existing == path else f" (so {path} cannot be made)"
        return f"cannot write in {existing}{where}: {exc.strerror or exc}"
    return None
