"""A checkpoint's small fields (epoch, summary_row, lineage) without torch: the readers of the
result tree (rumpy tree, export, report) import no torch, and loading a checkpoint would read
its whole file. torch.save writes a zip whose first, uncompressed record `data.pkl` is the
pickled dict; tensors in it are references to other records. Unpickling that one record with
every torch class replaced by an inert placeholder costs ~1 ms whatever the model's size, and
runs no code from the file (only the few standard classes below are ever constructed).

Nothing here is verified (no checksum is read): a peeked value is a witness to compare
summary.csv with, never a source of weights. Damaged files give None."""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

# Constructible classes a checkpoint's plain data may name; anything else becomes _Opaque.
_ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
            ("builtins", "slice"): slice, ("builtins", "complex"): complex}


class _Opaque:
    """Stands for a tensor, storage or any other object the file names: accepts anything."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Opaque()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass


_OPAQUE = _Opaque()


def _opaque(*args, **kwargs) -> _Opaque:
    return _OPAQUE  # one shared placeholder: a checkpoint names hundreds of tensors


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _ALLOWED.get((module, name), _opaque)

    def persistent_load(self, pid):
        return _OPAQUE


_CACHE: dict[tuple, dict | None] = {}


def peek(path: Path) -> dict | None:
    """The checkpoint's top-level dict with tensors as placeholders, or None when the file is
    missing or cannot be read. Cached per file version (inode, size, mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = _read(path)
    return _CACHE[key]


_CHUNK = 1 << 16
_LOCAL = struct.Struct("<4s5H3I2H")  # a zip record's local header


def _first_record(path: Path) -> dict | None:
    """torch.save's first record, data.pkl, unpickled straight after its local header (it is
    stored, not compressed, and a pickle ends itself at its STOP opcode): one small read
    instead of parsing the whole central directory. None when the file is laid out otherwise
    (the zipfile path below then reads it)."""
    with open(path, "rb") as handle:
        head = handle.read(_LOCAL.size)
        if len(head) < _LOCAL.size:
            return None
        sig, _, _, method, *_, name_len, extra_len = _LOCAL.unpack(head)
        if sig != b"PK\x03\x04" or method != 0:
            return None
        if not handle.read(name_len).endswith(b"/data.pkl"):
            return None
        handle.seek(extra_len, os.SEEK_CUR)
        start = handle.tell()
        try:  # one read holds the record of a checkpoint of any size (~12 kB)
            return _Unpickler(io.BytesIO(handle.read(_CHUNK))).load()
        except Exception:  # larger, or not a pickle: unpickled from the file as it comes
            handle.seek(start)
            return _Unpickler(handle).load()


def _read(path: Path) -> dict | None:
    try:
        state = _first_record(path)
        if state is not None:
            return state if isinstance(state, dict) else None
    except Exception:
        pass  # read again through the zip's directory below
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if name is None:
                return None
            with archive.open(name) as handle:
                state = _Unpickler(handle).load()
    except Exception:  # any damage: the caller treats the file as no witness
        return None
    return state if isinstance(state, dict) else None


def peek_epoch(path: Path) -> int | None:
    state = peek(path)
    epoch = state.get("epoch") if state else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1 else None


def peek_row(path: Path) -> dict | None:
    """The summary row an epoch checkpoint carries (None when it carries none)."""
    state = peek(path)
    row = state.get("summary_row") if state else None
    return dict(row) if isinstance(row, dict) and row else None


def peek_lineage(path: Path) -> dict | None:
    state = peek(path)
    lineage = state.get("lineage") if state else None
    return lineage if isinstance(lineage, dict) else None
