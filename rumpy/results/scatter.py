"""Predicted-vs-true scatter plots of a regression eval set, one panel per target, with the
y = x line and the panel's R2."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_PANELS = 6  # a figure of more panels is unreadable; the CSVs hold every target


def scatter_image(pred: np.ndarray, true: np.ndarray, names: list[str], title: str) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import torch

    from ..metrics.regression import R2

    r2s = R2()(torch.from_numpy(pred), torch.from_numpy(true)).tolist()
    count = min(len(names), MAX_PANELS)
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4), squeeze=False)
    for j, ax in enumerate(axes[0]):
        x, y = true[:, j], pred[:, j]
        ax.scatter(x, y, s=6, alpha=0.6)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="y = x")
        ax.set_title(f"{title}: {names[j]} (R2 {r2s[j]:.3f})")
        ax.set_xlabel(f"true {names[j]}")
        ax.set_ylabel(f"predicted {names[j]}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    return figure_image(fig)


def figure_image(fig) -> Image.Image:
    """A matplotlib figure as an RGB image (the figure is closed)."""
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return img.convert("RGB")
