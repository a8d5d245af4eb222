"""`val_example_indices`: chosen eval images followed over the epochs. Each validation keeps the
image's output (centre crop) as result_outputs/examples/<set>/<image>/epoch_<N>.png, and
redraws <set>/<image>.png: bicubic | the outputs of up to MAX_EPOCHS validations, evenly spread
and always the newest | HR, each panel labelled, so the improvement reads left to right."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.atomic import atomic_open
from .samples import LABEL, labelled_strip  # noqa: F401 (LABEL: tests read it here)

PANEL = 192        # centre crop per panel, in HR pixels: detail over context
MAX_EPOCHS = 12    # panels between bicubic and HR
_EPOCH = re.compile(r"epoch_(\d+)\.png")


def _centre(img) -> np.ndarray:
    _, h, w = img.shape
    top, left = max(0, (h - PANEL) // 2), max(0, (w - PANEL) // 2)
    return img[:, top: top + PANEL, left: left + PANEL].permute(1, 2, 0).numpy()


def _save(path: Path, image: Image.Image) -> None:
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")


def _spread(epochs: list[int]) -> list[int]:
    if len(epochs) <= MAX_EPOCHS:
        return epochs
    picks = np.linspace(0, len(epochs) - 1, MAX_EPOCHS).round().astype(int)
    return [epochs[i] for i in sorted(set(picks.tolist()))]


def save_example(folder: Path, epoch: int, sample) -> Path:
    """Keeps this epoch's output of one example image and redraws its strip; returns the strip."""
    own = folder / sample.key
    own.mkdir(parents=True, exist_ok=True)
    for name, image in (("bicubic", sample.bicubic), ("hr", sample.hr)):
        if not (own / f"{name}.png").is_file():
            _save(own / f"{name}.png", Image.fromarray(_centre(image)))
    _save(own / f"epoch_{epoch}.png", Image.fromarray(_centre(sample.sr)))
    epochs = sorted(int(m.group(1)) for p in own.iterdir() if (m := _EPOCH.fullmatch(p.name)))
    panels = [(("bicubic", "bic."), own / "bicubic.png")]
    panels += [((f"epoch {e}", f"ep {e}", str(e)), own / f"epoch_{e}.png") for e in _spread(epochs)]
    panels.append((("HR",), own / "hr.png"))
    strip = labelled_strip([(labels, Image.open(path).convert("RGB")) for labels, path in panels])
    path = folder / f"{sample.key}.png"
    _save(path, strip)
    return path
