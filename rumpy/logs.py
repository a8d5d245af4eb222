"""Logging set-up: the 'rumpy' logger prints to the console and, during a run, to its train.log."""
from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
logger = logging.getLogger("rumpy")


def setup_console(level: int = logging.INFO) -> None:
    if not any(getattr(h, "_rumpy_console", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
        handler._rumpy_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def attach_file(path: Path) -> logging.Handler:
    """Everything rumpy logs, and Python warnings (from torch and others), also go to `path`."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
    logging.captureWarnings(True)
    for name in ("rumpy", "py.warnings"):
        logging.getLogger(name).addHandler(handler)
    return handler


def detach_file(handler: logging.Handler) -> None:
    for name in ("rumpy", "py.warnings"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()
