"""One writer per node, and retention against forking, with kernel locks (`fcntl.flock`).

A node's writer holds an exclusive flock on `<node>/.lock` for as long as it trains. Taking it is
atomic (of any number of contenders exactly one wins), and the kernel drops it when the process
dies however it dies, so a stale lock needs no takeover logic that two processes could both run.
The file's content (pid, host, since) is only for messages; it may be empty (a writer that has
just taken the lock) or garbage, and is never trusted.

`tree_lock` is a second, tree-wide lock (`<experiment>/.tree.lock`): checkpoint retention and
branch creation hold it so that a fork can never point at a checkpoint deleted under it.

Lock files are removed on release, while still locked; whoever locks a file checks that it is
still the one at the path (else it locked a removed file, which guards nothing, and tries again)."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
TREE_LOCK_NAME = ".tree.lock"
# A reader's probe (lock_holder) holds a node's lock for microseconds; a writer that meets one
# tries again for this long before it calls the node locked.
PROBE_GRACE_S = 0.1
_HELD: dict[tuple[int, int], "NodeLock"] = {}  # this process's node locks, by (device, inode)


class NodeLockedError(RuntimeError):
    pass


def _lock_file(path: Path, blocking: bool) -> int | None:
    """An fd of `path` holding an exclusive flock; None when another holds it (non-blocking)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            current = os.stat(path)
        except BlockingIOError:
            os.close(fd)
            return None
        except FileNotFoundError:  # released and removed between our open and flock
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if os.path.samestat(os.fstat(fd), current):
            return fd
        os.close(fd)  # we locked a file its holder removed on release: lock the current one


def _unlock_file(fd: int, path: Path) -> None:
    """Remove the lock file (only if it is still ours) before closing, i.e. while holding it."""
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _read_info(fd: int) -> dict:
    """The pid/host/since a writer wrote into its lock file; {} for an empty or garbage file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return {}
    return info if isinstance(info, dict) else {}


def _peek(path: Path) -> dict:
    """A lock file's content, without locking it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read_info(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _names_live_writer(info: dict) -> bool:
    """Whether a lock file names a process that is still there (only a hint, for speed)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    return info.get("host") != socket.gethostname() or _alive(pid)


def lock_holder(folder: Path) -> dict | None:
    """The live writer of a node ({'pid', 'host', 'since'}, None where unknown), or None when
    nobody (or this very process) holds its lock. Probes with a non-blocking shared lock on its
    own open of the file, released at once, so it never waits and never creates the file."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file (or an unusable one): nobody can hold it
        return None
    try:
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) in _HELD:
            return None  # our own lock (a second open would conflict with it)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"pid": None, "host": None, "since": None, **_read_info(fd)}
        return None  # closing the fd drops the probe's lock
    finally:
        os.close(fd)


def _one_line(value) -> str:
    return " ".join(str(value).split())[:80]  # lock file content is untrusted


def _locked_error(folder: Path, holder: dict) -> NodeLockedError:
    who = "another process"
    if holder.get("pid") is not None:
        who = (f"process {_one_line(holder['pid'])} on {_one_line(holder.get('host'))} "
               f"(since {_one_line(holder.get('since'))})")
    return NodeLockedError(f"{folder} is being trained by {who}; wait for it to finish or stop "
                           f"it first")


def check_unlocked(folder: Path) -> None:
    holder = lock_holder(folder)
    if holder is not None:
        raise _locked_error(folder, holder)


class NodeLock:
    """The node's writer lock, held from acquire() to release() or the process's end."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        end = time.monotonic() + PROBE_GRACE_S
        while True:
            try:
                fd = _lock_file(self.path, blocking=False)
            except OSError as exc:  # e.g. a folder named .lock
                raise NodeLockedError(f"{self.path}: cannot be used as a lock file ({exc}); "
                                      f"remove it") from None
            if fd is not None:
                break
            holder = _peek(self.path)
            # A file naming a live process: its writer holds it. Otherwise it may be a reader's
            # probe (lock_holder) or a writer that has not written its pid yet: look again.
            if _names_live_writer(holder) or time.monotonic() > end:
                raise _locked_error(self.path.parent, holder)
            time.sleep(0.002)
        previous = _read_info(fd)
        if previous.get("pid") is not None:  # a holder that released would have removed it
            log.warning("taking over the lock of %s from process %s on %s, which is gone",
                        self.path.parent, _one_line(previous["pid"]),
                        _one_line(previous.get("host")))
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        stat = os.fstat(fd)
        _HELD[(stat.st_dev, stat.st_ino)] = self
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        stat = os.fstat(self.fd)
        _HELD.pop((stat.st_dev, stat.st_ino), None)
        _unlock_file(self.fd, self.path)
        self.fd = None


def _drop_in_child() -> None:
    """A forked child (a DataLoader worker, say) shares its parent's open lock file, and with it
    the lock: left open, a child that outlives a killed writer would keep the node locked. Close
    the child's copy (never unlock or remove it: that would release the parent's lock)."""
    for lock in _HELD.values():
        os.close(lock.fd)
        lock.fd = None
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_in_child)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created, and removed again) for the `with` block; waits for
    another holder. For short critical sections between processes."""
    try:
        fd = _lock_file(Path(path), blocking=True)
    except OSError as exc:  # e.g. a folder where the lock file belongs
        raise NodeLockedError(f"{path}: cannot be used as a lock file ({exc.strerror or exc}); "
                              f"remove it") from None
    try:
        yield
    finally:
        _unlock_file(fd, Path(path))


def tree_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """Held by checkpoint retention (while it decides what to delete and deletes it) and by
    branch creation (while it checks its fork checkpoint and moves the branch into place), so
    retention either sees the new branch and keeps its fork epoch, or deletes the checkpoint
    before the fork checks for it. Both hold it for milliseconds."""
    return file_lock(Path(root) / TREE_LOCK_NAME)
