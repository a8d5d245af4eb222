"""SR after training: predict on images, the exported network (pre-upsampling inside) and its
check on a real image, and the export contract. Used by SISRTask; inference/ calls the task."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.datasets import to_tensor
from ..data.images import bicubic, list_images, quantize, read_rgb, to_float
from .base import InferenceError

_MAX_SIDE = 96  # the export check's input is a crop of at most this many LR pixels a side


def as_rgb(item, where: str) -> np.ndarray:
    """An H x W x 3 uint8 array from a file, or from an array as read_rgb would give it
    (grayscale expanded, alpha dropped)."""
    if isinstance(item, (str, Path)):
        try:
            return read_rgb(Path(item))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise InferenceError(f"{where}: cannot read image {item}: {reason}") from None
    array = np.asarray(item)
    if array.dtype != np.uint8:
        raise InferenceError(f"{where}: expected a uint8 image, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InferenceError(f"{where}: expected an H x W x 3 image, got shape {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def is_single(x) -> bool:
    return isinstance(x, (str, Path)) or (isinstance(x, np.ndarray) and x.ndim in (2, 3))


def predict_images(task, infer, inputs):
    """One image (array or path) -> one uint8 array; a list -> a list."""
    single = is_single(inputs)
    items = [inputs] if single else list(inputs)
    outputs = []
    for i, item in enumerate(items):
        lr = to_tensor(as_rgb(item, f"image {i}"))[None]
        out = infer(task.model_input(lr))  # the task's own conversion, as in validation
        outputs.append(quantize(out)[0].byte().permute(1, 2, 0).cpu().numpy())
    return outputs[0] if single else outputs


class SRNetwork(nn.Module):
    """LR in [0, 1] -> SR: the model, after the task's bicubic pre-upsampling when it has one."""

    def __init__(self, model: nn.Module, scale: int, pre_upsampled: bool):
        super().__init__()
        self.model = model
        self.scale = scale
        self.pre_upsampled = pre_upsampled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_upsampled:
            x = bicubic(x, (x.shape[-2] * self.scale, x.shape[-1] * self.scale))
        return self.model(x)


def _centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(img[top: top + side, left: left + side])


def check_image(cfg) -> tuple[np.ndarray, str]:
    """A centre crop of the first image of the node's first eval set, or (absent) of a
    scikit-image photo; H x W x 3 uint8."""
    for ds in cfg.data.eval_sets.values():
        folder = Path(getattr(ds, "lr", "") or "")
        try:
            images = list_images(folder) if folder.is_dir() else []
            if images:
                return _centre_crop(read_rgb(images[0]), _MAX_SIDE), f"{images[0]} (centre crop)"
        except (OSError, ValueError):
            pass
    from skimage import data

    return _centre_crop(data.astronaut()[40:, 100:], 64), "scikit-image astronaut (crop)"


def export_examples(task, infer) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """Two sizes (the second a crop of the first), so a dynamic spatial size is exercised."""
    img, source = check_image(task.cfg)
    h, w = img.shape[:2]
    crops = [img, np.ascontiguousarray(img[: max(2, h * 3 // 4 + 1), : max(2, w * 2 // 3 + 1)])]
    pairs = []
    for crop in crops:
        lr = torch.from_numpy(crop).permute(2, 0, 1)[None]
        pairs.append((to_float(lr.clone()), infer(task.model_input(lr))))
    return pairs, source


def export_contract(scale: int, pre_upsampled: bool) -> dict:
    pre = ("inside the network: bicubic as MATLAB's imresize (a = -0.5, mirrored borders), "
           "in float, not rounded" if pre_upsampled else "none: the network takes the LR image")
    return {
        "names": ("lr", "sr"),
        "dynamic_dims": {0: "batch", 2: "height", 3: "width"},
        "input": {"name": "lr", "layout": "NCHW", "channels": 3, "color": "RGB",
                  "dtype": "float32", "range": [0.0, 1.0],
                  "meaning": "the LR image's 8-bit values / 255",
                  "dynamic": ["batch", "height", "width"]},
        "output": {"name": "sr", "layout": "NCHW", "channels": 3, "color": "RGB",
                   "dtype": "float32", "size": f"input height and width x {scale}",
                   "range": "nominally [0, 1], not clamped; rumpy clamps to [0, 1], "
                            "multiplies by 255 and rounds to get the 8-bit image"},
        "scale": scale,
        "pre_upsampling": pre,
        "description": [f"scale: {scale}", f"pre-upsampling: {pre}"],
    }
