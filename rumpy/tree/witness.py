"""summary.csv and lineage.json checked against the checkpoints, which carry their epoch's
summary row and (a branch's) lineage and are written checksum-first: a reader never shows a
deleted, edited or duplicated row, or an edited fork epoch, as the truth. Where a checkpoint
disagrees, its value is used and one warning names the file and what disagrees; the next
continue rewrites the files from what is used here (training/setup.py, trainer.py). Epochs no
checkpoint covers (pruned by retention) can only be taken from summary.csv as it is.

Checkpoints are peeked (core/peek.py: no torch, ~1 ms each, cached per file version)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from ..core.peek import peek_lineage, peek_row
from ..core.summary import INHERITED, format_value

log = logging.getLogger(__name__)
_WARNED: set[tuple] = set()


def _warn(key: tuple, message: str, *args) -> None:
    """Each problem once per process (a reader asks for a node's rows many times)."""
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message, *args)


def _epochs(epochs) -> str:
    epochs = sorted(epochs)
    shown = ", ".join(map(str, epochs[:8]))
    return shown + (f" (+{len(epochs) - 8} more)" if len(epochs) > 8 else "")


def _disagreement(row: dict, witness: dict) -> str | None:
    """The first column where the CSV row differs from the checkpoint's row, as text."""
    for key, value in witness.items():
        if key == INHERITED:
            continue
        if format_value(row.get(key)) != format_value(value):
            return f"{key} {format_value(row.get(key)) or 'empty'} vs {format_value(value)}"
    return None


def checked_rows(path: Path, rows: list[dict], witnesses: dict[int, Path], fork: int,
                 file_missing: bool) -> list[dict]:
    """The summary rows to use: `rows` (read from summary.csv at `path`) with duplicates
    dropped, rows that disagree with their epoch's checkpoint (`witnesses`: epoch -> file)
    replaced by the checkpoint's, and rows the file lacks rebuilt from checkpoints."""
    candidates: dict[int, list[dict]] = {}
    for row in rows:
        candidates.setdefault(row["epoch"], []).append(row)
    duplicated = [e for e, found in candidates.items() if len(found) > 1]
    used: dict[int, dict] = {}
    edited, rebuilt = [], []
    for epoch in sorted(set(candidates) | set(witnesses)):
        witness = peek_row(witnesses[epoch]) if epoch in witnesses else None
        if witness is not None and witness.get("epoch") != epoch:
            witness = None  # a checkpoint copied over another epoch's: no witness
        found = candidates.get(epoch, [])
        if witness is None:
            if found:
                used[epoch] = found[0]
            continue
        flag = found[0].get(INHERITED, int(epoch <= fork)) if found else int(epoch <= fork)
        agreeing = [r for r in found if _disagreement(r, witness) is None]
        if agreeing:
            used[epoch] = agreeing[0]
            continue
        used[epoch] = {**witness, INHERITED: flag}
        if found:
            edited.append((epoch, _disagreement(found[0], witness), witnesses[epoch].name))
        else:
            rebuilt.append(epoch)
    if duplicated:
        _warn((str(path), "dup"), "%s holds epoch(s) %s more than once; one row per epoch is used "
              "(the one its checkpoint confirms, else the first); a continue rewrites the file",
              path, _epochs(duplicated))
    if edited:
        epoch, what, name = edited[0]
        more = f" (and epochs {_epochs(e for e, _, _ in edited[1:])})" if len(edited) > 1 else ""
        _warn((str(path), "edited"), "%s disagrees with the checkpoints at epoch %d: %s in %s%s; "
              "the checkpoints' rows are used and a continue rewrites the file", path, epoch,
              what, name, more)
    if rebuilt:
        what = "is missing" if file_missing else f"lacks epoch(s) {_epochs(rebuilt)}"
        _warn((str(path), "missing"), "%s %s; %d row(s) rebuilt from their checkpoints (epochs "
              "without a checkpoint are lost); a continue rewrites the file", path, what,
              len(rebuilt))
    return [used[e] for e in sorted(used)]


_FORK_NAME = re.compile(r"(?:epoch|weights)_(\d+)\.pt")


def checked_lineage(lineage_path: Path, data: dict, own: dict[int, Path],
                    inherited: list[int]) -> dict:
    """lineage.json's `data`, unless a witness contradicts its fork epoch: the branch's newest
    checkpoint's own lineage, else the largest inherited epoch of its summary.csv, else the
    epoch in the name of the fork checkpoint it records. The witness's lineage is returned
    marked `recovered_from` (a continue writes it back)."""
    claimed = data["fork_epoch"]
    for epoch in sorted(own, reverse=True):
        saved = peek_lineage(own[epoch])
        if saved is None or not isinstance(saved.get("fork_epoch"), int):
            continue
        # the fork epoch only: the parent is the folder above (a renamed folder is no damage)
        if saved["fork_epoch"] == claimed:
            return data
        _warn((str(lineage_path), "lineage"), "%s says fork_epoch %s, its checkpoint %s says %s; "
              "the checkpoint's is used and a continue rewrites the file", lineage_path,
              claimed, own[epoch].name, saved["fork_epoch"])
        return {**data, "fork_epoch": saved["fork_epoch"], "recovered_from": own[epoch].name}
    named = _FORK_NAME.fullmatch(Path(str(data.get("fork_checkpoint", ""))).name)
    witness, source = None, None
    if inherited:
        witness, source = max(inherited), "summary.csv's inherited rows"
    elif named:
        witness, source = int(named.group(1)), f"its fork_checkpoint {data['fork_checkpoint']}"
    if witness is None or witness == claimed:
        return data
    _warn((str(lineage_path), "lineage"), "%s says fork_epoch %s, %s say(s) %s; %s is used and a "
          "continue rewrites the file", lineage_path, claimed, source, witness, witness)
    return {**data, "fork_epoch": witness, "recovered_from": source}
