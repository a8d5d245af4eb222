"""The commands. A Ctrl+C while a command is still importing (torch's import is most of
start-up) ends it quietly with exit status 130: nothing has been written yet. Each command's
main() then restores Python's KeyboardInterrupt (`interrupts_raise`) and handles it itself."""
import os
import signal
import threading


def _quiet_exit(signum, frame):
    # Ends the process at once rather than raising: an exception raised inside a C extension's
    # import (numpy's, torch's pybind11 modules) aborted the process with a C++ traceback, and
    # one raised inside import-time code that catches everything was swallowed (the run then
    # trained to the end). Nothing has been written yet, so nothing needs cleaning up.
    os.write(2, b"interrupted while starting; nothing was written\n")
    os._exit(130)


def interrupts_raise() -> None:
    """From here on a Ctrl+C raises KeyboardInterrupt, for the command to clean up after."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


if threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _quiet_exit)
