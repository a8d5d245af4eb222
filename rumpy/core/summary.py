"""summary.csv: one row per epoch with stable columns, rewritten atomically after each epoch."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..utils.atomic import atomic_write_text

# Wall-clock columns (they differ between identical runs): the epoch's time, and how much of it
# the training loop waited for batches.
TIMING_COLUMNS = ("epoch-time", "data-wait")
# 1 on a branch's rows copied from its parent (epochs up to the fork), else 0.
INHERITED = "inherited"


def format_value(value) -> str:
    """'' for a value not computed (no validation that epoch); nan and inf as they are."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip: CSV values compare bit for bit
    return str(value)


class SummaryLog:
    def __init__(self, path: Path, columns: list[str], rows: list[dict] | None = None):
        self.path = path
        self.rows: list[dict] = list(rows or [])
        # Columns only earlier rows have (a parent's metric this branch dropped) are kept,
        # before the timing columns, so no value is ever lost; new ones are empty there.
        extra = [c for r in self.rows for c in r if c not in columns]
        extra = list(dict.fromkeys(extra))
        cut = columns.index(TIMING_COLUMNS[0]) if TIMING_COLUMNS[0] in columns else len(columns)
        self.columns = columns[:cut] + extra + columns[cut:]

    def append(self, row: dict) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"summary.csv has no column(s) {sorted(unknown)}")
        self.rows.append({INHERITED: 0, **row})
        self.write()

    def write(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([format_value(row.get(c)) for c in self.columns])
        atomic_write_text(self.path, buffer.getvalue())


def write_table(path: Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: format_value(v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
