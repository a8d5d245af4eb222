"""The commands. A Ctrl+C raises KeyboardInterrupt, for each command to clean up after,
except while a module is being imported: then the process ends at once with exit status 130."""
import os
import signal
import threading


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_interrupt(signum, frame):
    # An exception raised inside a C extension's import (torch's pybind11 modules) aborts the
    # process with a C++ traceback, and one raised inside import-time code that catches
    # everything is swallowed (a run then trained to the end). Imports happen before anything is
    # written, or are pure reads; all of rumpy's files are written atomically, so ending here
    # loses at most the epoch in progress.
    if _importing(frame):
        os.write(2, b"interrupted while importing; stopped at once\n")
        os._exit(130)
    raise KeyboardInterrupt


if threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _on_interrupt)
