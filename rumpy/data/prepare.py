"""Make an LR folder from an HR folder by bicubic downsampling (`rumpy prepare-data`)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..utils.atomic import atomic_open
from PIL import Image

from .images import downscale_uint8, list_images, read_rgb

log = logging.getLogger(__name__)


def prepare_lr(hr_dir: Path, out_dir: Path, scale: int, naming: str = "div2k",
               hr_out_dir: Path | None = None) -> int:
    """Write one LR PNG per HR image; returns how many. HR images whose sides are not multiples
    of `scale` are cropped at the bottom/right first (written to `hr_out_dir` when given), and
    each crop is logged. naming 'div2k' writes `0001x2.png`, 'same' keeps the HR stem."""
    for name, folder in (("--out", out_dir), ("--hr-out", hr_out_dir)):
        if folder is not None and Path(folder).resolve() == Path(hr_dir).resolve():
            raise ValueError(f"{name} {folder} is the --hr folder: its images would be "
                             f"overwritten; write to another folder")
    images = list_images(hr_dir)
    if not images:
        raise ValueError(f"no images (png/jpg/bmp/tif) in {hr_dir}")
    for path in images:  # every image readable and large enough before anything is written
        try:
            h, w = read_rgb(path).shape[:2]
        except Exception as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        if h < scale or w < scale:
            raise ValueError(f"{path} is {w}x{h}, smaller than the scale {scale}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if hr_out_dir:
        hr_out_dir.mkdir(parents=True, exist_ok=True)
    cropped = 0
    for path in images:
        hr = read_rgb(path)
        h, w = hr.shape[:2]
        hc, wc = h - h % scale, w - w % scale
        if (hc, wc) != (h, w):
            cropped += 1
            log.info("%s: %dx%d cropped to %dx%d (a multiple of scale %d)", path.name, w, h, wc, hc,
                     scale)
            hr = hr[:hc, :wc]
        if hr_out_dir:
            _write(hr_out_dir / f"{path.stem}.png", hr)
        stem = f"{path.stem}x{scale}" if naming == "div2k" else path.stem
        _write(out_dir / f"{stem}.png", downscale_uint8(hr, scale))
    log.info("wrote %d LR images (x%d) to %s; %d HR images were cropped", len(images), scale,
             out_dir, cropped)
    return len(images)


def _write(path: Path, array) -> None:
    with atomic_open(path, "wb") as handle:
        Image.fromarray(array).save(handle, format="PNG")
