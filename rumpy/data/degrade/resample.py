"""`downsample` and `upsample`: MATLAB's bicubic imresize by the pipeline's `scale` (rumpy's
one resampler, rumpy.data.resize), on 8-bit images as MATLAB resizes them."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..resize import imresize_uint8
from .base import Operation
from .registry import DEGRADATIONS


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    return imresize_uint8(t, [h, w])[0].permute(1, 2, 0).to(torch.uint8).numpy()


@DEGRADATIONS.register("downsample")
class Downsample(Operation):
    """Sides that are not multiples of the scale are cropped at the bottom/right first (as
    `rumpy prepare-data` does), so LR x scale is exactly the HR size."""
    name = "downsample"
    defaults = {"scale": 4}
    ignored = ("device", "jm", "restrict_metadata")  # the last: the original left its column out
    columns = {"scale": int}

    def check(self) -> None:
        if not isinstance(self.options["scale"], int) or self.options["scale"] < 1:
            self.fail("scale", f"expected a positive integer, got {self.options['scale']!r}")

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"scale": self.options["scale"]}

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        s = self.options["scale"]
        if min(h, w) < s:
            raise ValueError(f"is {w}x{h} at the downsample step, smaller than the scale {s}")
        return h // s, w // s

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        s = int(params["scale"])
        h, w = img.shape[0] // s, img.shape[1] // s
        if h == 0 or w == 0:
            raise ValueError(f"a {img.shape[1]}x{img.shape[0]} image is smaller than the scale {s}")
        return _resize(np.ascontiguousarray(img[:h * s, :w * s]), h, w)


@DEGRADATIONS.register("upsample")
class Upsample(Downsample):
    name = "upsample"

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        return h * self.options["scale"], w * self.options["scale"]

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        s = int(params["scale"])
        return _resize(img, img.shape[0] * s, img.shape[1] * s)
