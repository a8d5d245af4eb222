"""steps.csv (training.log_every_n_steps) read back: by the run that continues it, the
trackers that catch up on it and the tests. Written by training/step_log.py."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger(__name__)
STEP_TIMING_COLUMNS = ("step-time", "data-wait")


def read_steps(path: Path) -> list[dict]:
    """Whole rows of a steps.csv (a line cut short by a crash, or garbage, is left out)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    continue  # too many or too few fields: a torn line
                try:
                    int(row["step"])
                except (KeyError, TypeError, ValueError):
                    continue
                rows.append(row)
            return rows
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("%s cannot be read (%s); its step rows are not carried on", path, exc)
        return []
