"""A node of the result tree: a run folder, its lineage, status, checkpoints and summary."""
from __future__ import annotations

import csv
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config.periods import target_epochs
from ..core.run_folder import EVAL_DIR, EXPORT_DIR, RunFolder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from ..utils.atomic import atomic_write_text
from ..core.declared import reserved_names, writer_of
from .lock import lock_holder
from ..core.peek import peek_epoch
from .witness import checked_lineage, checked_rows

LINEAGE = "lineage.json"
STATUS = "status.json"
INTERRUPTED = "interrupted.pt"
LAST, BEST = "last.pt", "best.pt"


class _Reserved:
    """Names inside a node folder that are not branches (and so cannot be branch names): what
    the writers declared (tree/declared.py), read when asked, so later declarations count."""

    def __contains__(self, name: str) -> bool:
        return writer_of("node", name) is not None

    def __iter__(self):
        return iter(sorted(reserved_names()))


RESERVED = _Reserved()


log = logging.getLogger(__name__)


class DamagedNode(ValueError):
    """A node whose files are damaged beyond what rumpy can recover; the message says which."""


def read_json(path: Path) -> dict | None:
    """A JSON object, or None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def parse_value(text: str):
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


_WARNED: set[str] = set()


def read_summary(path: Path) -> list[dict]:
    """The rows of a summary.csv that are whole (all columns, an integer epoch); a file cut
    mid-row or holding garbage gives the rows before the damage, with one warning."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        return []
    except (OSError, ValueError, csv.Error) as exc:  # binary garbage, NUL bytes, bad encoding
        _warn_once(path, f"{path} cannot be read ({exc}); its rows are ignored")
        return []
    out = []
    for row in rows:
        whole = None not in row and all(row.get(c) is not None for c in columns)
        epoch = parse_value(row.get("epoch") or "")
        if not whole or not isinstance(epoch, int) or epoch < 1:
            _warn_once(path, f"{path} is damaged after {len(out)} rows; the rest is ignored")
            break
        out.append({k: parse_value(v) for k, v in row.items() if v != ""})
    return out


def _warn_once(path: Path, message: str) -> None:
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        log.warning("%s", message)


@dataclass(frozen=True)
class Node:
    root: Path   # the experiment folder (the tree's root node)
    rel: str     # '' for the root node, 'lr_half/warm' for a nested branch

    @property
    def path(self) -> Path:
        return self.root / self.rel if self.rel else self.root

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1] if self.rel else self.root.name

    def exists(self) -> bool:
        return (self.path / "config.toml").is_file()

    def link_problem(self) -> str | None:
        """Why writing into this node could land outside its tree (None when it cannot): a
        symbolic link as the run folder, a branch folder on the way to it, or one of the
        folders rumpy writes and removes files in. Files rumpy replaces are renamed over (a
        link among them is replaced, never followed)."""
        folders = [self.root] + [self.root.joinpath(*self.rel.split("/")[:depth])
                                 for depth in range(1, len(self.rel.split("/")) + 1)
                                 if self.rel]
        outputs = self.folder.outputs
        folders += [self.folder.models, outputs, self.path / EVAL_DIR, self.path / EXPORT_DIR]
        if outputs.is_dir() and not outputs.is_symlink():
            folders += sorted(p for p in outputs.iterdir() if p.is_dir() or p.is_symlink())
        for folder in folders:
            if folder.is_symlink():
                return (f"{folder} is a symbolic link (to {os.readlink(folder)}); rumpy follows "
                        f"no links in a result tree, so that nothing outside it is written or "
                        f"removed: replace the link by the folder itself")
        return None

    @property
    def lineage(self) -> dict | None:
        """A branch's lineage.json; when it is missing or damaged, the lineage recovered from
        the branch's own checkpoints or its summary's inherited rows (marked `recovered_from`);
        DamagedNode when neither has it. None for the root."""
        if not self.rel:
            return None
        # Asked for at every inherited epoch (fork_epoch): kept while the files it was read
        # from are unchanged (a folder's stamp changes when a checkpoint comes or goes).
        base = str(self.path)
        stamp = _stamp(f"{base}/{LINEAGE}", f"{base}/result_outputs/summary.csv",
                       f"{base}/saved_models")
        cached = _LINEAGES.get(base)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        data = read_json(self.path / LINEAGE)
        if data is not None and _valid_lineage(data):
            inherited = [r["epoch"] for r in read_summary(self.folder.summary)
                         if r.get("inherited")]
            found = checked_lineage(self.path / LINEAGE, data, self.own_checkpoints(), inherited)
        else:
            found = _recover_lineage(self)
        _LINEAGES[base] = (stamp, found)
        return found

    @property
    def status(self) -> dict:
        return read_json(self.path / STATUS) or {}

    def directions(self) -> dict[str, str]:
        """The node's own metric directions ('model' task), recorded when it trained; a branch
        that has none yet uses its parent's."""
        found = self.status.get("directions")
        if isinstance(found, dict):
            return {k: v for k, v in found.items() if v in ("max", "min")}
        parent = self.parent if self.rel else None
        return parent.directions() if parent is not None else {}

    def set_status(self, **fields) -> None:
        status = self.status
        status.update(fields, updated=time.strftime("%Y-%m-%d %H:%M:%S"))
        write_json(self.path / STATUS, status)

    def state(self) -> str:
        """running, finished, stopped_early, pruned (a search's pruner stopped it: sweep/),
        interrupted, diverged or crashed, derived from the
        disk when status.json cannot say: a 'running' node whose process is gone is 'crashed',
        or 'finished' when its checkpoints reach num_epochs (killed after its last save)."""
        state = self.status.get("state", "unknown")
        if state in ("running", "unknown") and lock_holder(self.path) is None:
            own = self.own_saved()
            try:
                target = target_epochs(
                    tomllib.loads(self.folder.config.read_text())["training"])
            except (OSError, ValueError, KeyError, TypeError):
                target = None
            if own and target is not None and max(own) >= target:
                return "finished"
            return "crashed"
        return state

    @property
    def parent(self) -> "Node | None":
        if not self.rel:
            return None
        return Node(self.root, self.rel.rsplit("/", 1)[0] if "/" in self.rel else "")

    @property
    def fork_epoch(self) -> int:
        lineage = self.lineage
        return int(lineage["fork_epoch"]) if lineage else 0

    def children(self) -> list["Node"]:
        if not self.path.is_dir():
            return []
        # A symbolic link is never a branch: following it would read and write outside the tree.
        # A branch whose config.toml is gone is still a branch (its lineage, status or
        # checkpoints say so): it is listed with a warning, its epochs still hold up its fork.
        out = []
        for p in sorted(self.path.iterdir()):
            if not p.is_dir() or p.is_symlink() or p.name in RESERVED:
                continue
            if (p / "config.toml").is_file():
                out.append(Node(self.root, f"{self.rel}/{p.name}" if self.rel else p.name))
            elif _was_node(p):
                _warn_once(p / "config.toml", f"{p / 'config.toml'} is missing: the branch is "
                           f"listed from its other files; a continue of it recovers the config "
                           f"from its checkpoints")
                out.append(Node(self.root, f"{self.rel}/{p.name}" if self.rel else p.name))
        return out

    def walk(self):
        yield self
        for child in self.children():
            yield from child.walk()

    def summary(self) -> list[dict]:
        """summary.csv's rows checked against the checkpoints (tree/witness.py)."""
        path = self.folder.summary
        return checked_rows(path, read_summary(path), self.saved_epochs(),
                            self.fork_epoch if self.rel else 0, not path.is_file())

    def own_checkpoints(self) -> dict[int, Path]:
        """Full epoch checkpoints (epoch_N.pt), the ones retention prunes and forks start from."""
        return _numbered(self.folder.models, "epoch")

    def own_snapshots(self) -> dict[int, Path]:
        """Weights-only snapshots (weights_N.pt) of epochs without a full checkpoint."""
        return _numbered(self.folder.models, "weights")

    def own_saved(self) -> dict[int, Path]:
        """Every epoch this node itself can load, with its best file: epoch_N.pt, else last.pt
        or best.pt when they hold that epoch, else weights_N.pt."""
        # Asked for at every level of every branch below (saved_epochs): kept while the folder
        # and its pointer files are unchanged (checkpoints come and go by rename).
        base = str(self.path)
        stamp = _stamp(f"{base}/saved_models", f"{base}/saved_models/{BEST}",
                       f"{base}/saved_models/{LAST}")
        cached = _SAVED.get(base)
        if cached is not None and cached[0] == stamp:
            return dict(cached[1])
        out = dict(self.own_snapshots())
        for name in (BEST, LAST):
            path = self.folder.models / name
            epoch = pointer_epoch(path, self.own_checkpoints())
            if epoch is not None:
                out[epoch] = path
        out.update(self.own_checkpoints())
        out = dict(sorted(out.items()))
        _SAVED[base] = (stamp, out)
        return dict(out)

    def checkpoint_for(self, epoch: int) -> Path | None:
        """This node's checkpoint of `epoch`, or the ancestor's one it inherited."""
        own = self.own_saved().get(epoch)
        if own is not None:
            return own
        if self.rel and epoch <= self.fork_epoch:
            return self.parent.checkpoint_for(epoch)
        return None

    def saved_epochs(self) -> dict[int, Path]:
        """checkpoint_for of every epoch it has an answer for."""
        out = dict(self.own_saved())
        if self.rel:
            fork = self.fork_epoch
            for epoch, path in self.parent.saved_epochs().items():
                if epoch <= fork:
                    out.setdefault(epoch, path)
        return dict(sorted(out.items()))

    def referenced_epochs(self) -> set[int]:
        """Epochs of this node's checkpoints that branches (at any depth) fork from."""
        out = set()
        for child in self.children():
            out.add(child.fork_epoch)
            out |= {e for e in child.referenced_epochs() if e <= child.fork_epoch}
        return out


_LINEAGES: dict[str, tuple] = {}
_SAVED: dict[str, tuple] = {}


def _stamp(*paths: str) -> tuple:
    """What changes when any of `paths` changes (None for a missing one). Plain strings: this
    runs thousands of times in `rumpy tree`, where pathlib's joins cost more than the stats."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _was_node(folder: Path) -> bool:
    """A folder without config.toml that rumpy trained in: its lineage, status or checkpoints."""
    return (folder / LINEAGE).is_file() or (folder / STATUS).is_file() or \
        bool(_numbered(folder / "saved_models", "epoch"))


def _numbered(folder: Path, prefix: str) -> dict[int, Path]:
    out = {}
    for p in folder.glob(f"{prefix}_*.pt"):
        digits = p.stem[len(prefix) + 1:]
        if digits.isascii() and digits.isdigit():
            out[int(digits)] = p
    return dict(sorted(out.items()))


def pointer_epoch(path: Path, checkpoints: dict[int, Path]) -> int | None:
    """The epoch last.pt or best.pt holds (None when absent or unreadable). Usually a hard link
    to an epoch checkpoint, recognised by its inode; otherwise the file's `epoch` is peeked
    (core/peek.py: no torch, cheap whatever the file's size; verified only when loaded)."""
    try:
        st = path.stat()
    except OSError:
        return None
    for epoch, ckpt in checkpoints.items():
        try:
            if os.path.samestat(st, ckpt.stat()):
                return epoch
        except OSError:
            continue
    return peek_epoch(path)  # damaged: None here, load_checkpoint says so when loaded


def _valid_lineage(data: dict) -> bool:
    epoch = data.get("fork_epoch")
    return isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1 and \
        isinstance(data.get("parent"), str)


_RECOVERED: dict[str, dict] = {}


def _recover_lineage(node: "Node") -> dict:
    """From the newest own checkpoint that carries it, else from the inherited summary rows."""
    key = str(node.path)
    if key in _RECOVERED:
        return _RECOVERED[key]
    from ..core.checkpoint import CorruptCheckpoint, load_checkpoint

    parent = node.rel.rsplit("/", 1)[0] if "/" in node.rel else ""
    found = None
    for epoch, path in sorted(node.own_checkpoints().items(), reverse=True):
        try:
            saved = load_checkpoint(path).get("lineage")
        except CorruptCheckpoint:
            continue
        if isinstance(saved, dict) and _valid_lineage(saved):
            found = {**saved, "recovered_from": path.name}
            break
    if found is None:
        inherited = [r["epoch"] for r in read_summary(node.folder.summary) if r.get("inherited")]
        if inherited:
            found = {"parent": parent, "fork_epoch": max(inherited),
                     "recovered_from": "summary.csv"}
    if found is None:
        raise DamagedNode(f"{node.path / LINEAGE} is missing or damaged and neither the branch's "
                          f"checkpoints nor its summary.csv say where it was forked; restore the "
                          f"file, or remove the branch")
    log.warning("%s is missing or damaged; recovered from %s: forked at epoch %d of %s",
                node.path / LINEAGE, found["recovered_from"], found["fork_epoch"],
                found["parent"] or "the root")
    _RECOVERED[key] = found
    return found


def foreign_content(folder: Path) -> str | None:
    """Why `folder` is not recognisably a rumpy node made by rumpy (None when it is): anything
    overwrite_data would delete must be rumpy's own."""
    config = folder / "config.toml"
    if not config.is_file():
        return "it is not a rumpy run folder (no config.toml)"
    try:
        table = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its config.toml is not a rumpy config"
    if not {"experiment", "training", "model", "data"} <= set(table):
        return "its config.toml is not a rumpy config"
    for entry in folder.iterdir():
        name = entry.name
        if entry.is_symlink():
            return f"it holds a symbolic link, {name}"
        if name in ("saved_models", "result_outputs") and entry.is_dir():
            stray = [e.name for e in entry.iterdir()
                     if not e.name.startswith(".") and writer_of(name, e.name) is None]
        elif name.startswith(".") or writer_of("node", name) is not None:
            continue  # a hidden temp/lock file, or what a declared writer makes (declared.py)
        elif entry.is_dir() and (entry / "config.toml").is_file():
            problem = foreign_content(entry)  # a branch: the same rules
            if problem:
                return f"its branch {name}: {problem}"
            continue
        else:
            stray = [name]
        if stray:
            where = "" if stray == [name] else f"{name}/"
            return f"it holds {where}{stray[0]}, which rumpy did not make"
    return None
