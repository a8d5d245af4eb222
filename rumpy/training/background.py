"""Checkpoint writes off the training thread (used on CUDA).

The epoch's state is copied first, on the training thread (GPU tensors into pinned host memory,
one synchronisation for all of them): training then goes on changing its weights while one
writer thread serialises, checksums and atomically writes the copy. The copy is what costs the
GPU time; pickling, hashing and the disk are what the thread takes off it.

Jobs run in submission order (a checkpoint, then what depends on it: last/best links, the
removal of interrupted.pt, retention), so the disk sees the same sequence as the synchronous
path. A failed job (disk full) makes the following jobs skip and is raised in the training
thread at its next submit or wait, as a synchronous write's error would be a moment earlier.
Anything that reads checkpoints back (the interrupted save, retention, the end of the run)
waits first; so does the interpreter at exit."""
from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref

import torch

log = logging.getLogger(__name__)


def snapshot(obj):
    """A copy of a checkpoint's nested dicts/lists/tuples with every tensor copied to the CPU, so
    later training steps cannot change what is written."""
    pending = []
    copied = _copy(obj, pending)
    if pending:  # the non-blocking device-to-host copies, finished once
        for device in {t.device for t in pending}:
            torch.cuda.current_stream(device).synchronize()
    return copied


def _copy(obj, pending: list):
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "cuda":
            out = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=True)
            out.copy_(obj.detach(), non_blocking=True)
            pending.append(obj)
            return out
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy(v, pending) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(v, pending) for v in obj)
    return obj


_LIVE: "weakref.WeakSet[BackgroundSaver]" = weakref.WeakSet()


@atexit.register
def _wait_all() -> None:
    for saver in list(_LIVE):
        saver.wait(raise_errors=False)


class BackgroundSaver:
    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        _LIVE.add(self)

    def submit(self, fn, *args) -> None:
        """Queue `fn(*args)`; raises the error of an earlier job first."""
        self._raise()
        if self._thread is None:
            # a daemon: an exit never hangs on it, and atexit waits for its jobs first
            self._thread = threading.Thread(target=self._work, name="rumpy-checkpoints",
                                            daemon=True)
            self._thread.start()
        self._jobs.put((fn, args))

    def wait(self, raise_errors: bool = True) -> None:
        """Until every queued job has run."""
        if self._thread is not None:
            self._jobs.join()
        if raise_errors:
            self._raise()
        elif self._error is not None:  # the run is ending on another error already
            log.warning("a background checkpoint write failed: %s: %s",
                        type(self._error).__name__, self._error)
            self._error = None

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            fn, args = self._jobs.get()
            try:
                if self._error is None:  # after a failure the rest would be out of order
                    fn(*args)
            except BaseException as exc:  # raised in the training thread
                self._error = exc
            finally:
                self._jobs.task_done()
