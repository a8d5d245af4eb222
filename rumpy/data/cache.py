"""Decoded-image stores, so PNG decoding does not throttle a small machine every epoch.

'memory' decodes every image once in the main process (DataLoader workers then share the arrays
copy-on-write); 'disk' decodes once into .npy files under cache_dir, reused across runs and read
memory-mapped; 'off' decodes on every access."""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.atomic import atomic_open
from .images import read_rgb

log = logging.getLogger(__name__)


class ImageDecodeError(ValueError):
    """An image that cannot be decoded (truncated, corrupt): the message names the file."""


def _decoded(path: Path) -> np.ndarray:
    try:
        return read_rgb(path)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise ImageDecodeError(f"cannot decode {path}: {' '.join(str(exc).split())}") from None


def _verify(path: Path) -> None:
    """Cheap integrity check (PNG chunk CRCs, truncation) for images decoded only later."""
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode {path}: {' '.join(str(exc).split())}") from None


class CacheError(ValueError):
    """The disk cache cannot be written (cache_dir unwritable, under a file, disk full)."""


class ImageStore:
    """Decoded images of a set; every image is decoded (or verified, for 'off') when the store is
    built, so a corrupt file stops the run before it starts, naming the file."""

    def __init__(self, paths: list[Path], mode: str, cache_dir: Path | None = None):
        if mode not in ("memory", "disk", "off"):
            raise ValueError(f"unknown cache mode {mode!r}")
        self.paths = list(paths)
        self.mode = mode
        self._arrays: list[np.ndarray] | None = None
        self._files: list[Path] | None = None
        # PIL decodes without the GIL: threads use every core for the one-off decoding.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            if mode == "memory":
                self._arrays = list(pool.map(_decoded, self.paths))
            elif mode == "off":
                list(pool.map(_verify, self.paths))
            elif mode == "disk":
                assert cache_dir is not None
                self._files = list(pool.map(lambda p: self._disk_entry(Path(cache_dir), p),
                                            self.paths))

    @staticmethod
    def _disk_entry(cache_dir: Path, path: Path) -> Path:
        # Keyed by path, size and mtime: an edited image gets a new entry, never a stale one.
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        digest = hashlib.sha256(ident).hexdigest()
        entry = cache_dir / "decoded" / digest[:2] / f"{digest}.npy"
        if not entry.is_file():
            array = _decoded(path)
            try:
                entry.parent.mkdir(parents=True, exist_ok=True)
                with atomic_open(entry, "wb") as handle:
                    np.save(handle, array)
            except OSError as exc:
                raise CacheError(f"cannot write the disk cache in {cache_dir}: "
                                 f"{exc.strerror or exc}") from None
        return entry

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._arrays is not None:
            return self._arrays[i]
        if self._files is not None:
            return np.load(self._files[i], mmap_mode="r")
        return read_rgb(self.paths[i])


def choose_mode(requested: str, decoded_bytes: int, memory_limit_gb: float) -> str:
    if requested != "auto":
        return requested
    return "memory" if decoded_bytes <= memory_limit_gb * 2**30 else "disk"
