"""A node of the result tree: a run folder, its lineage, status, checkpoints and summary."""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..results.run_folder import RunFolder
from ..utils.atomic import atomic_write_text
from .lock import lock_holder

LINEAGE = "lineage.json"
STATUS = "status.json"
INTERRUPTED = "interrupted.pt"
# Names inside a node folder that are not branches (and so cannot be branch names).
RESERVED = {"config.toml", "train.log", "result_outputs", "saved_models", "tensorboard", LINEAGE,
            STATUS, ".lock"}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


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


def read_summary(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    out = []
    for row in rows:
        parsed = {k: parse_value(v) for k, v in row.items() if v != ""}
        out.append(parsed)
    return out


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

    @property
    def lineage(self) -> dict | None:
        return read_json(self.path / LINEAGE)

    @property
    def status(self) -> dict:
        return read_json(self.path / STATUS) or {}

    def set_status(self, **fields) -> None:
        status = self.status
        status.update(fields, updated=time.strftime("%Y-%m-%d %H:%M:%S"))
        write_json(self.path / STATUS, status)

    def state(self) -> str:
        """running, finished, stopped_early, interrupted or crashed (a 'running' node whose
        process is gone)."""
        state = self.status.get("state", "unknown")
        if state == "running" and lock_holder(self.path) is None:
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
        return [Node(self.root, f"{self.rel}/{p.name}" if self.rel else p.name)
                for p in sorted(self.path.iterdir())
                if p.is_dir() and p.name not in RESERVED and (p / "config.toml").is_file()]

    def walk(self):
        yield self
        for child in self.children():
            yield from child.walk()

    def summary(self) -> list[dict]:
        return read_summary(self.folder.summary)

    def own_checkpoints(self) -> dict[int, Path]:
        out = {}
        for p in self.folder.models.glob("epoch_*.pt"):
            try:
                out[int(p.stem.split("_", 1)[1])] = p
            except ValueError:
                continue
        return dict(sorted(out.items()))

    def checkpoint_for(self, epoch: int) -> Path | None:
        """This node's checkpoint of `epoch`, or the ancestor's one it inherited."""
        own = self.own_checkpoints().get(epoch)
        if own is not None:
            return own
        if self.rel and epoch <= self.fork_epoch:
            return self.parent.checkpoint_for(epoch)
        return None

    def referenced_epochs(self) -> set[int]:
        """Epochs of this node's checkpoints that branches (at any depth) fork from."""
        out = set()
        for child in self.children():
            out.add(child.fork_epoch)
            out |= {e for e in child.referenced_epochs() if e <= child.fork_epoch}
        return out
