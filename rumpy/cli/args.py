"""What every rumpy command line shares: errors as one line (argparse prints its usage first,
which buries the error), and numbers in ASCII digits only (Python's int() also takes '١' or '５',
which no one types on purpose)."""
from __future__ import annotations

import argparse
import re
import sys

from ..registry import did_you_mean

_INTEGER = re.compile(r"[+-]?[0-9]+")
_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse, with a one-line error and a pointer to --help; subcommand parsers inherit it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        choice = _CHOICE.search(message)
        if choice:  # a mistyped subcommand or option value
            message += did_you_mean(choice[1], re.findall(r"'([^']*)'", choice[2]))
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(text)


def positive(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def epoch(text: str) -> int | str:
    """A saved epoch: N >= 1 (ASCII digits), 'best' or 'last'."""
    if text in ("best", "last"):
        return text
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an epoch number >= 1, 'best' or 'last', "
                                         f"got {text!r}")
    return int(text)
