"""Reading and writing 8-bit RGB images, and the bicubic resampling used to make LR images
(MATLAB's, rumpy.data.resize)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .resize import imresize, imresize_uint8

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _check_mode(path: Path, mode: str) -> None:
    if mode.startswith(("I", "F")):  # I;16, I, F: more than 8 bits a channel
        raise ValueError(f"{path.name} is a {mode} image; 8-bit images (RGB or grayscale) expected")


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8. Grayscale is expanded to three channels; alpha is dropped."""
    with Image.open(path) as img:
        _check_mode(path, img.mode)
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels; raises ValueError for
    images that are not 8-bit."""
    with Image.open(path) as img:
        _check_mode(path, img.mode)
        return img.height, img.width


def write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 Bx3xHxW -> float in [0, 1]."""
    return batch.float().div_(255.0)


def bicubic(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resampling exactly as MATLAB's imresize (rumpy.data.resize) of a float Bx3xHxW
    tensor; values are not clamped."""
    return imresize(img, [int(size[0]), int(size[1])])


def bicubic_uint8(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A uint8 Bx3xHxW batch resampled as MATLAB's imresize resamples a uint8 image (rounded to
    8 bits after each pass), as float in [0, 1]: the bicubic row of published SR tables."""
    return imresize_uint8(img.double(), [int(size[0]), int(size[1])]).div_(255.0).float()


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> float 8-bit levels in [0, 255], as a saved PNG would hold them."""
    return img.clamp(0, 1).mul(255.0).round()


def downscale_uint8(hr: np.ndarray, scale: int) -> np.ndarray:
    """HxWx3 uint8 (dimensions multiples of `scale`) -> LR, HxWx3 uint8, as MATLAB's
    imresize(hr, 1/scale) gives it."""
    h, w = hr.shape[:2]
    t = torch.from_numpy(hr).permute(2, 0, 1)[None].double()
    lr = imresize_uint8(t, [h // scale, w // scale])
    return lr[0].permute(1, 2, 0).to(torch.uint8).numpy()
