"""`realesrgannoise`: Real-ESRGAN's additive noise, Gaussian (sigma in 8-bit levels) or Poisson
(scaled), in colour (independent per channel) or grey (one field on all channels). The noise
field is drawn from its own recorded seed, so a metadata row reproduces the image exactly."""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Operation, to_uint8
from .registry import DEGRADATIONS


@DEGRADATIONS.register("realesrgannoise")
class RealESRGANNoise(Operation):
    name = "realesrgannoise"
    defaults = {"gaussian_poisson_ratio": 0.5, "gaussian_noise_sigma_range": [1.0, 30.0],
                "poisson_noise_scale_range": [0.05, 3.0], "gray_noise_probability": 0.4,
                "random_noise_generation": True, "noise_type": "gaussian",
                "gaussian_noise_sigma": 10.0, "poisson_noise_scale": 1.0, "gray_noise": False,
                "normalize_metadata": True, "request_noise_image_pca": False}
    ignored = ("device", "noise_image_pca_length", "pca_patch_size", "pca_batch_len",
               "load_pca_matrix")
    columns = {"gaussian_noise_sigma": float, "poisson_noise_scale": float, "gray_noise": int,
               "noise_seed": int}

    def check(self) -> None:
        o = self.options
        self.bounds = {"gaussian_noise_sigma": self.range_option("gaussian_noise_sigma_range", 0),
                       "poisson_noise_scale": self.range_option("poisson_noise_scale_range", 0)}
        for key in ("gaussian_poisson_ratio", "gray_noise_probability"):
            if not 0 <= o[key] <= 1:
                self.fail(key, f"expected a probability in [0, 1], got {o[key]}")
        if o["noise_type"] not in ("gaussian", "poisson"):
            self.fail("noise_type", f"expected 'gaussian' or 'poisson', got {o['noise_type']!r}")
        if o["request_noise_image_pca"]:
            self.fail("request_noise_image_pca", "noise PCA codes are not written by rumpy "
                                                 "degrade; set it to false")

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        o = self.options
        if o["random_noise_generation"]:
            gaussian = rng.uniform() < o["gaussian_poisson_ratio"]
            value = float(rng.uniform(*self.bounds["gaussian_noise_sigma" if gaussian
                                                   else "poisson_noise_scale"]))
            gray = bool(rng.uniform() < o["gray_noise_probability"])
        else:
            gaussian = o["noise_type"] == "gaussian"
            value = float(o["gaussian_noise_sigma"] if gaussian else o["poisson_noise_scale"])
            gray = o["gray_noise"]
        return {"gaussian_noise_sigma": value if gaussian else 0.0,
                "poisson_noise_scale": 0.0 if gaussian else value, "gray_noise": int(gray),
                "noise_seed": int(rng.integers(0, 2 ** 31 - 1))}

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        rng = np.random.default_rng(int(params["noise_seed"]))
        x = img.astype(np.float64)
        gray = bool(int(params["gray_noise"]))
        shape = img.shape[:2] + ((1,) if gray else (3,))
        if params["gaussian_noise_sigma"] > 0:
            noise = rng.standard_normal(shape) * params["gaussian_noise_sigma"]
        elif params["poisson_noise_scale"] > 0:
            noise = _poisson(x / 255.0, gray, rng) * 255.0 * params["poisson_noise_scale"]
        else:
            return img.copy()
        return to_uint8(x + noise)

    def ranges(self) -> dict[str, tuple[float, float]]:
        return dict(self.bounds)


def _poisson(x: np.ndarray, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Real-ESRGAN's Poisson noise of an image in [0, 1]: counts at a power of two at least the
    number of distinct 8-bit values, on the luma when grey."""
    if gray:
        x = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    levels = len(np.unique(np.round(x * 255)))
    levels = 2 ** int(np.ceil(np.log2(max(levels, 1))))
    return rng.poisson(x * levels) / float(levels) - x
