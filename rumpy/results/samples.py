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


def save_samples(folder: Path, set_name: str, samples) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in samples:
        panels = [_centre(t) for t in (s.bicubic, s.sr, s.hr)]
        gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
        strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
        with atomic_open(folder / f"{set_name}_{s.key}.png", "wb") as handle:
            Image.fromarray(strip).save(handle, format="PNG")
