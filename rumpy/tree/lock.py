"""One writer per node: a lock file holding the writer's pid and host. A lock whose process is
gone (killed, crashed) is stale and is taken over."""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"


class NodeLockedError(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_holder(folder: Path) -> dict | None:
    """The live writer of a node, or None when unlocked or the lock is stale."""
    try:
        info = json.loads((folder / LOCK_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", -1))):
        return None
    if info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        return None
    return info


def check_unlocked(folder: Path) -> None:
    holder = lock_holder(folder)
    if holder is not None:
        raise NodeLockedError(
            f"{folder} is being trained by process {holder.get('pid')} on {holder.get('host')} "
            f"(since {holder.get('since')}); wait for it to finish or stop it first")


class NodeLock:
    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                check_unlocked(self.path.parent)  # raises while a live writer holds it
                log.warning("taking over a stale lock in %s (its process is gone)", self.path.parent)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(info)
            self.held = True
            return
        raise NodeLockedError(f"{self.path.parent}: could not take the lock")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
