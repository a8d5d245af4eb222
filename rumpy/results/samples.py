"""Sample images: bicubic | SR | HR side by side, centre-cropped to at most 384 px a panel."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..utils.atomic import atomic_open

PANEL = 384


def _centre(img: torch.Tensor) -> np.ndarray:
    _, h, w = img.shape
    top, left = max(0, (h - PANEL) // 2), max(0, (w - PANEL) // 2)
    return img[:, top: top + PANEL, left: left + PANEL].permute(1, 2, 0).numpy()


def sample_strip(sample) -> Image.Image:
    panels = [_centre(t) for t in (sample.bicubic, sample.sr, sample.hr)]
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return Image.fromarray(np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1))


def save_samples(folder: Path, set_name: str, samples) -> list[tuple[str, Image.Image]]:
    """Write the strips; returns (image name, strip) pairs for trackers."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in samples:
        strip = sample_strip(s)
        with atomic_open(folder / f"{set_name}_{s.key}.png", "wb") as handle:
            strip.save(handle, format="PNG")
        out.append((s.key, strip))
    return out
