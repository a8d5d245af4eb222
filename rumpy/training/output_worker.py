"""A background process for a run's outputs that training does not wait for: summary plots,
sample images and the experiment trackers (Aim, TensorBoard).

Why a process and not a thread: drawing figures and encoding PNGs hold the GIL for long
stretches, and every torch call of the training thread needs the GIL back after its kernel, so
a busy output thread would stall each small op of the training loop. The worker is forked from
the training process, runs at a lower priority, and ignores Ctrl+C and SIGTERM: the training
process handles those, then drains the worker before it exits, so every epoch's outputs are
complete. It is forked when the first job arrives, or earlier (`start_early`), before the run's
set-up: the set-up (data, model) is single-threaded, so the worker's imports (Aim, matplotlib:
~1.3 s of CPU) run on a core that would otherwise idle, not on one that training uses.

Jobs are module-level functions `fn(state, *args)` run in order in the worker; `state` holds
the run's RunView (`state["run"]`, sent with the first job that names a run), `state["write"]`
(file writes on a thread per label) and what jobs keep (open trackers, figures). A job with a `key` supersedes a
pending job with the same key (a plot that the next epoch redraws is not drawn). A job that
fails warns once per label and the worker goes on. At most MAX_BACKLOG jobs wait: when outputs
are slower than training (epochs of a fraction of a second) training waits for them rather
than queueing images without bound. Log records of the worker come back to the
training process, which logs them; so do status.json fields (a tracker's run id), which only
the training process writes. A job that finds the disk full ends the run as a failed checkpoint
would (the training process raises the error at its next epoch): an output failing on a full
disk frees what it had written, so the checkpoints could otherwise go on just fitting."""
from __future__ import annotations

import atexit
import collections
import errno
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler

log = logging.getLogger(__name__)

MAX_BACKLOG = 8     # queued jobs (~3 epochs' outputs) before training waits: bounded memory
NICE = 19           # only idle CPU: on a machine training saturates, outputs wait (they drain at the end)
PATIENCE_S = 120.0  # a drain gives up (and kills the worker) after this long without progress
_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class RunView:
    """What the worker's jobs see of the run (`state["run"]`, and what a tracker's `open`
    receives): picklable copies of what the outputs need, taken when the first job that names
    the run is submitted (the rows it starts with are then on disk)."""

    cfg: object
    plan: object
    eval_sets: tuple[str, ...]
    start_step: int  # optimizer steps done when the run started (steps.csv rows up to it exist)

    @property
    def node(self):
        return self.plan.node

    @property
    def folder(self):
        return self.plan.node.folder

    @classmethod
    def of(cls, run) -> "RunView":
        step_log = getattr(run, "step_log", None)
        return cls(run.cfg, run.plan, tuple(run.loaders.evals),
                   step_log.start_step if step_log is not None else 0)


class OutputWorker:
    """The training process's handle on the worker; started by the first `submit`."""

    def __init__(self):
        self._proc = None
        self._outbox: queue.Queue | None = None
        self._feeder: threading.Thread | None = None
        self._replies = None
        self._node = None
        self._done = False
        self._submitted = 0
        self._completed = 0
        self._held: list = []
        self.finished = False

    @property
    def started(self) -> bool:
        return self._proc is not None

    def start_early(self, warm, *args) -> None:
        """Fork the worker now, before the run exists, with `warm(state, *args)` as its first
        job (imports the outputs will need). The run reaches it with the first job naming it."""
        if self._proc is None and not self.finished:
            self._start()
            self._put(warm, args, None, "Outputs")

    def submit(self, run, fn, *args, key: str | None = None, label: str | None = None,
               hold: bool = False) -> None:
        """Queue `fn(state, *args)` for the worker; never waits for it. `label` names the output
        in a warning when the job fails. A job submitted with `hold` waits for the next job
        without it (or the drain) before a worker that has not started yet starts: opening
        trackers must not compete with the first epoch for the CPU."""
        if self.finished:
            return
        if hold and self._proc is None:
            self._held.append((run, fn, args, key, label))
            return
        if self._proc is None:
            self._start()
        self._release_held()
        self._attach(run)
        self._put(fn, args, key, label)

    def _attach(self, run) -> None:
        if run is not None and self._node is None:
            self._node = run.node  # for the status fields the worker sends back
            self._put(_attach_run, (RunView.of(run),), None, "Outputs")

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for run, fn, args, key, label in held:
            self._attach(run)
            self._put(fn, args, key, label)

    def _put(self, fn, args, key, label) -> None:
        self.poll()
        while self._submitted - self._completed >= MAX_BACKLOG and self._replies is not None:
            if self._replies.poll(0.05):
                self.poll()
            elif not self._proc.is_alive():
                break
        self._submitted += 1
        self._outbox.put(("job", key, label or fn.__name__, fn, args))

    def _start(self) -> None:
        # The run is never inherited (nor referenced here): jobs get its RunView. A reference
        # to the run would keep its DataLoader workers (which ignore SIGTERM) alive until
        # multiprocessing's exit handler joins them, forever.
        ctx = multiprocessing.get_context("fork")
        jobs_in, jobs_out = ctx.Pipe(duplex=False)
        replies_in, replies_out = ctx.Pipe(duplex=False)
        # blocked across the fork, so the worker never sees a signal before it ignores them
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._proc = ctx.Process(target=_worker_main, name="rumpy-outputs", daemon=False,
                                     args=(jobs_in, replies_out, os.getpid()))
            self._proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        jobs_in.close()
        replies_out.close()
        self._replies = replies_in
        # never left running at exit: multiprocessing's exit handler would wait for it forever
        atexit.register(_abort_at_exit, weakref.ref(self))
        self._outbox = queue.Queue()
        # pickling and writing images to the pipe happen here, never on the training thread
        self._feeder = threading.Thread(target=_feed, args=(self._outbox, jobs_out),
                                        name="rumpy-outputs-feeder", daemon=True)
        self._feeder.start()

    def poll(self, fail: bool = True) -> bool:
        """Handle what the worker sent back (log records, status fields); True on progress.
        Raises the worker's disk-full error when `fail`."""
        progress = False
        try:
            while self._replies is not None and self._replies.poll():
                progress = True
                self._handle(self._replies.recv(), fail)
        except (EOFError, OSError) as exc:
            if getattr(exc, "errno", None) in _DISK_FULL:
                raise
            self._replies = None  # the worker is gone; drain() reports it
        return progress

    def _handle(self, message, fail: bool) -> None:
        kind = message[0]
        if kind == "disk_full" and fail:
            raise OSError(message[1], os.strerror(message[1]))
        if kind == "log":
            _, name, level, text = message
            logging.getLogger(name).log(level, "%s", text)
        elif kind == "status":
            try:
                self._node.set_status(**message[1])
            except OSError as exc:
                log.warning("could not record %s in status.json (%s)", ", ".join(message[1]), exc)
        elif kind == "done":
            self._completed += 1
        elif kind == "exit":
            self._done = True

    def settle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the started worker to finish the jobs queued so far
        (True when it did). Training starts after its tracker opening this way: a worker still
        busy once training runs gets only slivers of CPU at its low priority, each of which
        stalls the training process's threads at their next barrier."""
        end = time.monotonic() + timeout
        while self._proc is not None and self._replies is not None and \
                self._completed < self._submitted:
            left = end - time.monotonic()
            if left <= 0 or not self._proc.is_alive():
                return False
            if self._replies.poll(min(left, 0.05)):
                self.poll()
        return self._completed >= self._submitted

    def drain(self, patience: float = PATIENCE_S, fail: bool = True) -> None:
        """Let the worker finish every queued job, close its trackers and exit. Gives up (and
        kills it, with a warning) when it makes no progress for `patience` seconds."""
        if self._proc is None and self._held:  # held jobs still run (a run stopped in epoch 1)
            self._start()
        self._release_held()
        if self._proc is None or self.finished:
            self.finished = True
            return
        self.finished = True
        try:
            self._outbox.put(("stop",))
            last = time.monotonic()
            while not self._done:
                if self._replies is None or not self._proc.is_alive() and not self._replies.poll():
                    break
                if self._replies.poll(0.05):
                    self.poll(fail)
                    last = time.monotonic()
                elif time.monotonic() - last > patience:
                    log.warning("the output worker made no progress for %.0f s; stopping it "
                                "(plots, samples or tracker data of the last epochs may be "
                                "missing)", patience)
                    break
            self.poll(fail)
            self._proc.join(timeout=5 if self._done else 0)
        finally:
            self._stop_process()
        if not self._done:
            log.warning("the output worker ended early (exit code %s): plots, samples or "
                        "tracker data of the last epochs may be missing", self._proc.exitcode)

    def abort(self) -> None:
        """On an error or a second Ctrl+C: stop without waiting for the queue."""
        self.finished = True
        self._held.clear()
        if self._proc is not None:
            self._stop_process()

    def _stop_process(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)
        self._outbox.put(None)
        if self._replies is not None:
            self._replies.close()
            self._replies = None


def _abort_at_exit(ref) -> None:
    worker = ref()
    if worker is not None and not worker.finished:
        worker.abort()


def _feed(outbox: queue.Queue, conn) -> None:
    while True:
        item = outbox.get()
        if item is None:
            break
        try:
            data = ForkingPickler.dumps(item)
        except Exception as exc:  # a job that cannot be pickled fails as a job, never the feeder
            _, key, label, _fn, _args = item
            data = ForkingPickler.dumps(("job", key, label, _unsendable,
                                         (f"{type(exc).__name__}: {exc}",)))
        try:
            conn.send_bytes(data)
        except (OSError, ValueError):  # the worker is gone; drain() reports it
            break
        if item[0] == "stop":
            break
    conn.close()


def _unsendable(state, problem: str) -> None:
    raise TypeError(f"its arguments cannot be sent to the output worker ({problem}); a job "
                    "is a module-level function with picklable arguments")


# -- the worker process ------------------------------------------------------------------------
class _Forward(logging.Handler):
    """The worker's log records, sent back to the training process."""

    def __init__(self, send):
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(("log", record.name, record.levelno, record.getMessage()))
        except Exception:  # the training process is gone: nobody to tell
            pass


def _route_logging(send) -> None:
    manager = logging.Logger.manager
    for logger in list(manager.loggerDict.values()) + [logging.getLogger()]:
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
    logging.getLogger().addHandler(_Forward(send))


def _attach_run(state, view: RunView) -> None:
    state["run"] = view


def _worker_main(jobs, replies, parent: int) -> None:
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    lock = threading.Lock()

    def send(message) -> None:
        with lock:
            replies.send(message)

    _route_logging(send)
    try:
        os.nice(NICE)
    except OSError:
        pass
    pending: collections.deque = collections.deque()
    ready = threading.Condition()
    closed = []

    def receive() -> None:
        while True:
            try:
                if not jobs.poll(1.0):
                    if os.getppid() != parent:  # the training process died: finish and go
                        break
                    continue
                data = jobs.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                message = pickle.loads(data)
            except Exception as exc:  # e.g. a function of a module this process cannot import
                logging.getLogger("rumpy.training.callbacks").warning(
                    "an output job could not be read by the output worker (%s: %s); training "
                    "goes on without it", type(exc).__name__, exc)
                send(("done", "?"))
                continue
            with ready:
                if message[0] == "stop":
                    break
                key = message[1]
                if key is not None:  # superseded: the newer one replaces it
                    for old in [m for m in pending if m[1] == key]:
                        pending.remove(old)
                        send(("done", old[2]))
                pending.append(message)
                ready.notify()
        with ready:
            closed.append(True)
            ready.notify()

    threading.Thread(target=receive, name="rumpy-outputs-receiver", daemon=True).start()
    warned: set[str] = set()

    def failed(label: str, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            send(("disk_full", exc.errno))
        if label not in warned:
            warned.add(label)
            logging.getLogger("rumpy.training.callbacks").warning(
                "%s: could not write (%s: %s); training goes on without it", label,
                type(exc).__name__, exc)

    writes = _Writes(failed)
    state = {"run": None, "trackers": [], "send": send, "write": writes.submit}
    ending = False
    try:
        while True:
            with ready:
                while not pending and not closed:
                    ready.wait()
                if not pending:
                    break
                _, _, label, fn, args = pending.popleft()
                if closed and not ending:  # the drain began: what is queued is all there is
                    ending = True
                    for tracker in state["trackers"]:
                        tracker.ending()
            try:
                fn(state, *args)
            except Exception as exc:
                failed(label, exc)
            send(("done", label))
    finally:
        writes.close()
        for tracker in state["trackers"]:
            tracker.close()
        for close in state.get("on_exit", []):
            close()
        try:
            send(("exit",))
        except Exception:
            pass
        # no interpreter shutdown: Aim's finalizers can wait forever on a failed storage, and
        # nothing else in this process needs cleaning up
        os._exit(0)


class _Writes:
    """`state["write"](label, fn, *args)`: file writes that run beside the worker's next jobs,
    in order per label, each label on a thread of its own (PNG encoding releases the GIL: a
    run's last sample strips, its tracker images and its last plots are made at once on a
    machine whose training has just freed its cores). At most two wait per label; a failure is
    reported as the job's own would be. The worker exits only after the last write."""

    def __init__(self, failed):
        self.failed = failed
        self.lanes: dict[str, tuple[queue.Queue, threading.Thread]] = {}

    def submit(self, label: str, fn, *args) -> None:
        if label not in self.lanes:
            lane: queue.Queue = queue.Queue(maxsize=2)
            thread = threading.Thread(target=self._run, args=(lane,), daemon=True,
                                      name=f"rumpy-outputs-{label}")
            thread.start()
            self.lanes[label] = (lane, thread)
        self.lanes[label][0].put((label, fn, args))

    def _run(self, lane: queue.Queue) -> None:
        while True:
            item = lane.get()
            if item is None:
                return
            label, fn, args = item
            try:
                fn(*args)
            except Exception as exc:
                self.failed(label, exc)

    def close(self) -> None:
        for lane, _ in self.lanes.values():
            lane.put(None)
        for _, thread in self.lanes.values():
            thread.join()
