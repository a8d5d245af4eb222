"""Checkpoints: written atomically with a SHA-256 sidecar, verified and loaded with
weights_only=True. They hold everything an exact resume needs, assembled from named parts:

    {"format": 2, "epoch": N, "config": {...}, "rng": {...},
     "parts": {"model", "optimizer", "scheduler", "scaler", "loop", "monitors", "task",
               "ema",                     # with training.ema_decay: the EMA weights
               "<network>": {...}},       # each other network of the task ("discriminator"):
                                          # its model, optimizer, scheduler, scaler
     "summary_row": {...}            # an epoch checkpoint's own summary.csv row
     "resume": {...}}                # interrupted.pt only: where in the epoch it stopped

Checkpoints of format 1 (no "format" key: the parts at the top level) are upgraded on load."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..utils.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)


FORMAT = 2
_V1_PARTS = ("model", "optimizer", "scheduler", "scaler")
# The parts a weights snapshot (weights_N.pt) leaves out: forking from one starts them afresh.
WEIGHTLESS_PARTS = ("optimizer", "scheduler", "scaler")
_V1_RESUME = ("position", "loss_sum", "learning_rate", "elapsed")


class CorruptCheckpoint(RuntimeError):
    pass


def assemble(epoch: int, parts: dict, config: dict, **extra) -> dict:
    return {"format": FORMAT, "epoch": epoch, "config": config, "rng": rng_state(),
            "parts": parts, **extra}


def upgrade(state: dict) -> dict:
    """A checkpoint in today's layout, whichever format it was written in."""
    version = state.get("format", 1)
    if version == FORMAT:
        return state
    if version != 1:
        raise ValueError(f"checkpoint format {version} is newer than this rumpy understands "
                         f"({FORMAT}); update rumpy")
    parts = {k: state.get(k) for k in _V1_PARTS}
    parts.update(loop={"step": state["step"]}, monitors=state.get("monitors", {}), task={})
    out = {"format": FORMAT, "epoch": state["epoch"], "config": state.get("config", {}),
           "rng": state["rng"], "parts": parts}
    if "summary_row" in state:
        out["summary_row"] = state["summary_row"]
    if "position" in state:
        out["resume"] = {k: state[k] for k in _V1_RESUME}
    return out


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's state as plain tensors/numbers, so weights_only loading accepts it
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, state: dict) -> str:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    # The checksum first: a checkpoint is never visible without it (a reader would have to call
    # it unverifiable); a checksum without its file (killed in between) is ignored.
    atomic_write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    atomic_write_bytes(path, data)
    return digest


def link_checkpoint(source: Path, target: Path, digest: str) -> None:
    """`target` becomes the same checkpoint as `source` (atomically replaced)."""
    atomic_write_text(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # a file system without hard links: a copy does the same job
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)



def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The verified checkpoint: its SHA-256 sidecar must exist and match, and an epoch
    checkpoint's own epoch must be the one in its name (a file copied over another epoch's is
    refused). CorruptCheckpoint names the file and the problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptCheckpoint(f"{path}: cannot read ({exc})") from None
    sidecar = path.with_name(path.name + ".sha256")
    try:
        expected = sidecar.read_text().split()[0]
    except FileNotFoundError:
        expected = _restore_sidecar(path, data)
    except (OSError, ValueError, IndexError):
        raise CorruptCheckpoint(f"{path}: its checksum file {sidecar.name} is empty or "
                                f"unreadable") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CorruptCheckpoint(f"{path}: checksum mismatch (truncated or corrupt file)")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        state = upgrade(state)
    except Exception as exc:
        raise CorruptCheckpoint(f"{path}: cannot be loaded ({exc})") from None
    named = re.fullmatch(r"(?:epoch|weights)_(\d+)\.pt", path.name)
    if named and state.get("epoch") != int(named.group(1)):
        raise CorruptCheckpoint(f"{path}: holds epoch {state.get('epoch')}, not the epoch of its "
                                f"name (a copy of another checkpoint?)")
    return state


def _restore_sidecar(path: Path, data: bytes) -> str:
    """A checkpoint whose checksum file was deleted (never by a kill: the checksum is written
    first) is verified by the CRC-32 that torch.save's zip format keeps for every record, and
    its checksum file is written again. Returns its digest; CorruptCheckpoint when a record
    fails its CRC."""
    sidecar = path.with_name(path.name + ".sha256")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        bad = f"({exc})"
    if bad is not None:
        raise CorruptCheckpoint(f"{path}: its checksum file {sidecar.name} is missing and the "
                                f"file fails its own integrity check at {bad}")
    digest = hashlib.sha256(data).hexdigest()
    try:
        atomic_write_text(sidecar, f"{digest}  {path.name}\n")
        done = "written again"
    except OSError:
        done = "not written (read-only?)"
    log.warning("%s: its checksum file was missing; every record inside it passed its CRC-32 "
                "check, so it is used and its checksum file %s", path, done)
    return digest


def is_weights_only(state: dict) -> bool:
    """A weights snapshot: no optimizer state to resume."""
    return "optimizer" not in state.get("parts", {})
