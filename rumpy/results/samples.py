"""Visual outputs on disk: SR sample strips (bicubic | SR | HR side by side, labelled,
centre-cropped to at most 384 px a panel), and any task's images saved per validation epoch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..utils.atomic import atomic_open

PANEL = 384
LABEL = 14  # pixel rows above the panels for their labels
GAP = 4     # white pixels between panels
# zlib level 1: about 3x faster than the default 6 on photo strips, for files ~15% larger
COMPRESS_LEVEL = 1


def _centre(img: torch.Tensor) -> np.ndarray:
    _, h, w = img.shape
    top, left = max(0, (h - PANEL) // 2), max(0, (w - PANEL) // 2)
    return img[:, top: top + PANEL, left: left + PANEL].permute(1, 2, 0).numpy()


def _fit(draw: ImageDraw.ImageDraw, labels: tuple[str, ...], width: int) -> str:
    """The longest of a panel's labels (longest first) that fits above it; the shortest else."""
    return next((text for text in labels if draw.textlength(text) <= width - 2), labels[-1])


def labelled_strip(panels: list[tuple[tuple[str, ...], Image.Image]]) -> Image.Image:
    """Panels side by side, GAP pixels apart, each under its label in a LABEL-high white band.
    A panel's labels are alternatives, longest first: small panels get the short one."""
    height = max(im.height for _, im in panels) + LABEL
    strip = Image.new("RGB", (sum(im.width + GAP for _, im in panels) - GAP, height), "white")
    draw, x = ImageDraw.Draw(strip), 0
    for labels, im in panels:
        draw.text((x + 1, 1), _fit(draw, labels, im.width), fill="black")
        strip.paste(im, (x, LABEL))
        x += im.width + GAP
    return strip


def sample_strip(sample) -> Image.Image:
    """bicubic | output | HR, labelled; the output's label carries the image's PSNR (as in
    per_image_epoch_<N>.csv) when it was measured."""
    psnr = getattr(sample, "psnr", None)
    output = ("output",) if psnr is None else (
        f"output, PSNR {psnr:.2f} dB", f"output {psnr:.2f} dB", f"{psnr:.2f} dB", f"{psnr:.1f}")
    return labelled_strip([
        (("LR, bicubic", "bicubic", "bic."), Image.fromarray(_centre(sample.bicubic))),
        (output, Image.fromarray(_centre(sample.sr))),
        (("HR",), Image.fromarray(_centre(sample.hr)))])


def save_images(folder: Path, set_name: str, images: list[tuple[str, Image.Image]]) -> None:
    """A validation's images of one eval set as <folder>/<set>_<name>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in images:
        with atomic_open(folder / f"{set_name}_{name}.png", "wb") as handle:
            img.save(handle, format="PNG", compress_level=COMPRESS_LEVEL)
