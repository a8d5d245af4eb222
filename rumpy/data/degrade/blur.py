"""Blur steps: `realesrganblur` (Real-ESRGAN's kernel family, isotropic/anisotropic Gaussian,
generalized, plateau, sinc) and `srmdgaussianblur` (SRMD's isotropic or anisotropic Gaussian).
Parameters are drawn uniformly over the configured ranges (or as Real-ESRGAN draws them, with
`preset = "realesrgan"`); the CSV holds the values applied (in pixels and radians), normalised to
[0, 1] only when a data set reads them."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...config.errors import ConfigError
from ...registry import did_you_mean
from .base import Operation, to_uint8
from .kernels import KERNEL_CODES, KERNEL_TYPES, filter2d, make_kernel
from .registry import DEGRADATIONS

_PARAMS = ("sigma_x", "sigma_y", "rotation", "beta_g", "beta_p", "omega_c")


def _check_size(op: Operation) -> None:
    size = op.options["kernel_size"]
    if not isinstance(size, int) or size < 3 or size % 2 == 0:
        op.fail("kernel_size", f"expected an odd integer >= 3, got {size!r}")


class _Blur(Operation):
    """What the kernel PCA (`metadata = ["blur_kernel"]`, kernel_pca.py) needs of a blur step:
    its kernel rebuilt from recorded parameters, and whether its kernels vary at all."""

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        k = self.options["kernel_size"]
        if min(h, w) <= k // 2:
            raise ValueError(f"is {w}x{h} at the {self.name} step, too small for its {k}x{k} "
                             f"kernel (sides of at least {k // 2 + 1} pixels)")
        return h, w

    def check_pca(self) -> None:
        o, size = self.options, self.options["kernel_size"]
        for key in ("pca_length", "pca_batch_len"):
            if not isinstance(o[key], int) or isinstance(o[key], bool) or o[key] < 1:
                self.fail(key, f"expected a positive integer, got {o[key]!r}")
        if o["pca_length"] > size * size:
            self.fail("pca_length", f"expected at most kernel_size**2 = {size * size} (a "
                                    f"{size}x{size} kernel has that many values), got "
                                    f"{o['pca_length']}")
        if o["pca_batch_len"] < o["pca_length"]:
            self.fail("pca_batch_len", f"expected at least pca_length = {o['pca_length']} "
                                       f"kernels to fit the PCA on, got {o['pca_batch_len']}")

    def kernel(self, params: dict[str, Any]) -> np.ndarray:
        """The k x k kernel `apply` uses for these (sampled or recorded) parameters."""
        raise NotImplementedError

    def varies(self) -> bool:
        """Whether the kernels are drawn at random (else every image has the same one)."""
        raise NotImplementedError


# Real-ESRGAN's kernel distributions (its train_realesrgan_x4plus options and RealESRGANDataset):
# `preset = "realesrgan"` for the first degradation's blur, "realesrgan2" for the second's.
# Options given beside a preset override its values.
_REALESRGAN = {"kernel_range": ["iso", "aniso", "generalized_iso", "generalized_aniso",
                                "plateau_iso", "plateau_aniso"],
               "kernel_probabilities": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
               "kernel_size": 21, "kernel_sizes": list(range(7, 22, 2)),
               "sigma_x_range": [0.2, 3.0], "sigma_y_range": [0.2, 3.0],
               "rotation_range": [-math.pi, math.pi], "betag_range": [0.5, 4.0],
               "betap_range": [1.0, 2.0], "omega_c_range": [math.pi / 5, math.pi],
               "sinc_probability": 0.1, "sampling": "realesrgan"}
PRESETS = {"realesrgan": _REALESRGAN,
           "realesrgan2": {**_REALESRGAN, "sigma_x_range": [0.2, 1.5],
                           "sigma_y_range": [0.2, 1.5]}}
SAMPLINGS = ("uniform", "realesrgan")


def _pad(kernel: np.ndarray, size: int) -> np.ndarray:
    """A kernel of smaller support, zero-padded to size x size (Real-ESRGAN pads to 21)."""
    pad = (size - kernel.shape[0]) // 2
    return np.pad(kernel, ((pad, pad), (pad, pad))) if pad > 0 else kernel


@DEGRADATIONS.register("realesrganblur")
class RealESRGANBlur(_Blur):
    """Real-ESRGAN's kernel families. `sampling = "uniform"` (the original tool's) draws every
    parameter uniformly over its range; "realesrgan" draws as Real-ESRGAN does: a shape beta
    from [low, 1] or [1, high] with equal chance, and a sinc kernel's cut-off from [pi/3, pi]
    below a 13-pixel support, [pi/5, pi] from 13 on. `kernel_sizes` draws each kernel's odd
    support (padded to kernel_size, recorded as `support`); `sinc_probability` replaces the
    kernel by a sinc one with that chance."""
    name = "realesrganblur"
    optional_columns = {"support": int}  # read from a CSV row when it has them

    def __init__(self, options: dict, scale: int, source: str, where: str):
        preset = options.get("preset", "")
        if preset and preset not in PRESETS:
            raise ConfigError(source, f"{where}.preset", f"unknown preset {preset!r}"
                                                         f"{did_you_mean(str(preset), PRESETS)} "
                                                         f"(presets: {', '.join(PRESETS)})")
        super().__init__({**PRESETS.get(preset, {}), **options}, scale, source, where)

    # the original tool's defaults
    defaults = {"preset": "", "sampling": "uniform", "kernel_sizes": [],
                "sinc_probability": 0.0,
                "kernel_range": ["iso"], "kernel_probabilities": [], "kernel_size": 21,
                "sigma_x_range": [0.6, 5.0], "sigma_y_range": [0.6, 5.0],
                "rotation_range": [-math.pi, math.pi], "betag_range": [0.5, 8.0],
                "betap_range": [0.5, 8.0], "omega_c_range": [math.pi / 3, math.pi],
                "random_selection": True, "selected_kernel": "iso", "sigma_x": 1.0,
                "sigma_y": 1.0, "rotation": 0.0, "beta_g": 1.0, "beta_p": 1.0,
                "omega_c": math.pi / 2, "normalize_metadata": True, "use_kernel_code": False,
                "request_kernel_metadata": True, "request_pca_kernels": True,
                "request_full_kernels": False, "pca_length": 10, "pca_batch_len": 30000}
    ignored = ("device", "load_pca_matrix")
    columns = {"kernel_type": str, "kernel_size": int, "sigma_x": float, "sigma_y": float,
               "rotation": float, "beta_g": float, "beta_p": float, "omega_c": float}

    def _check_type(self, key: str, value: Any, default: Any) -> None:
        if key == "kernel_range" and value == "all":  # the original's shorthand, expanded below
            return
        super()._check_type(key, value, default)

    def check(self) -> None:
        o = self.options
        _check_size(self)
        kinds = o["kernel_range"]
        if kinds == "all":
            kinds = o["kernel_range"] = list(KERNEL_TYPES)
        for kind in kinds + [o["selected_kernel"]]:
            if kind not in KERNEL_TYPES:
                self.fail("kernel_range", f"unknown kernel type {kind!r} (types: "
                                          f"{', '.join(KERNEL_TYPES)})")
        if not kinds:
            self.fail("kernel_range", "expected at least one kernel type")
        probs = o["kernel_probabilities"]
        if probs and (len(probs) != len(kinds) or min(probs) < 0 or sum(probs) <= 0):
            self.fail("kernel_probabilities", f"expected {len(kinds)} non-negative weights (one "
                                              f"per kernel_range entry), got {probs!r}")
        self.bounds = {"sigma_x": self.range_option("sigma_x_range", 1e-3),
                       "sigma_y": self.range_option("sigma_y_range", 1e-3),
                       "rotation": self.range_option("rotation_range"),
                       "beta_g": self.range_option("betag_range", 1e-3),
                       "beta_p": self.range_option("betap_range", 1e-3),
                       "omega_c": self.range_option("omega_c_range", 1e-3, math.pi)}
        if o["sampling"] not in SAMPLINGS:
            self.fail("sampling", f"expected one of {', '.join(SAMPLINGS)}, got "
                                  f"{o['sampling']!r}")
        sizes = o["kernel_sizes"]
        if any(not isinstance(k, int) or isinstance(k, bool) or k < 3 or k % 2 == 0
               or k > o["kernel_size"] for k in sizes):
            self.fail("kernel_sizes", f"expected odd supports from 3 to kernel_size = "
                                      f"{o['kernel_size']}, got {sizes!r}")
        if sizes:  # each image's support is a parameter of its kernel
            self.columns = {**type(self).columns, "support": int}
        if not 0 <= o["sinc_probability"] <= 1:
            self.fail("sinc_probability", f"expected a probability in [0, 1], got "
                                          f"{o['sinc_probability']!r}")
        if o["request_full_kernels"]:
            self.fail("request_full_kernels", "full kernels are not written by rumpy degrade: "
                                              "each is rebuilt exactly from its recorded "
                                              "parameters (set it to false)")
        self.check_pca()

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        o = self.options
        if not o["random_selection"]:
            kind = o["selected_kernel"]
            p = {k: float(o[k]) for k in _PARAMS}
        else:
            kind, p = self._draw(rng)
        if kind.endswith("iso") and not kind.endswith("aniso"):
            p["sigma_y"], p["rotation"] = p["sigma_x"], 0.0
        # parameters the kernel does not use are recorded as 0, as the original tool does
        used = {"sinc": ("omega_c",)}.get(kind, ("sigma_x", "sigma_y", "rotation") + (
            ("beta_g",) if kind.startswith("generalized") else
            ("beta_p",) if kind.startswith("plateau") else ()))
        support = p.pop("support", None)
        p = {k: (v if k in used else 0.0) for k, v in p.items()}
        out = {"kernel_type": kind, "kernel_size": o["kernel_size"], **p}
        if "support" in self.columns:
            out["support"] = support or o["kernel_size"]
        return out

    def _draw(self, rng: np.random.Generator) -> tuple[str, dict[str, float]]:
        """A random kernel's type and parameters (and its support, when drawn)."""
        o = self.options
        kinds = o["kernel_range"]
        probs = np.asarray(o["kernel_probabilities"] or [1.0] * len(kinds), dtype=float)
        sizes = o["kernel_sizes"]
        support = int(sizes[int(rng.integers(len(sizes)))]) if sizes else o["kernel_size"]
        if o["sinc_probability"] and rng.uniform() < o["sinc_probability"]:
            kind = "sinc"
        else:
            kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
        p = {k: float(rng.uniform(*self.bounds[k])) for k in _PARAMS}
        if o["sampling"] == "realesrgan":
            for key in ("beta_g", "beta_p"):  # either side of 1, with equal chance
                low, high = self.bounds[key]
                p[key] = float(rng.uniform(low, 1.0) if rng.uniform() < 0.5 else
                               rng.uniform(1.0, high))
            p["omega_c"] = float(rng.uniform(math.pi / 3 if support < 13 else math.pi / 5,
                                             math.pi))
        p["support"] = support
        return kind, p

    def kernel(self, params: dict[str, Any]) -> np.ndarray:
        kind = params["kernel_type"]
        if isinstance(kind, (int, float)):
            kind = KERNEL_TYPES[int(kind)]
        size = int(params["kernel_size"])
        support = int(params.get("support") or size)
        return _pad(make_kernel(kind, support, params), size)

    def varies(self) -> bool:
        return bool(self.options["random_selection"])

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return to_uint8(filter2d(img, self.kernel(params)))

    def ranges(self) -> dict[str, tuple[float, float]]:
        return dict(self.bounds)

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.options["use_kernel_code"]:
            return {**params, "kernel_type": KERNEL_CODES[params["kernel_type"]]}
        return params


@DEGRADATIONS.register("srmdgaussianblur")
class SRMDGaussianBlur(_Blur):
    name = "srmdgaussianblur"
    defaults = {"random": False, "sig": 2.6, "sig_min": 0.2, "sig_max": 4.0, "rate_iso": 1.0,
                "scaling": 3.0, "kernel_size": 21, "normalize_metadata": True,
                "request_kernel_metadata": True, "request_pca_kernels": True,
                "request_full_kernels": False, "pca_length": 10, "pca_batch_len": 30000}
    ignored = ("device", "load_pca_matrix", "noise", "rate_cln", "noise_high")
    columns = {"kernel_size": int, "isotropic_sigma": float, "anisotropic_x": float,
               "anisotropic_y": float, "anisotropic_pi": float}

    def check(self) -> None:
        o = self.options
        _check_size(self)
        if not 0 < o["sig_min"] <= o["sig_max"]:
            self.fail("sig_min", f"expected 0 < sig_min <= sig_max, got {o['sig_min']} and "
                                 f"{o['sig_max']}")
        if not 0 <= o["rate_iso"] <= 1:
            self.fail("rate_iso", f"expected a probability in [0, 1], got {o['rate_iso']}")
        if o["sig"] <= 0:
            self.fail("sig", f"expected a positive sigma, got {o['sig']}")
        if o["request_full_kernels"]:
            self.fail("request_full_kernels", "full kernels are not written by rumpy degrade: "
                                              "each is rebuilt exactly from its recorded "
                                              "parameters (set it to false)")
        self.check_pca()

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        o = self.options
        zero = {"isotropic_sigma": 0.0, "anisotropic_x": 0.0, "anisotropic_y": 0.0,
                "anisotropic_pi": 0.0}
        if not o["random"]:
            return {"kernel_size": o["kernel_size"], **zero, "isotropic_sigma": float(o["sig"])}
        if rng.uniform() < o["rate_iso"]:
            sigma = float(rng.uniform(o["sig_min"], o["sig_max"]))
            return {"kernel_size": o["kernel_size"], **zero, "isotropic_sigma": sigma}
        # SRMD/IKC's anisotropic kernel: a random angle, one width in range, the other up to
        # `scaling` times it (clipped to the range)
        angle = float(rng.uniform(0, math.pi))
        sx = float(rng.uniform(o["sig_min"], o["sig_max"]))
        sy = float(np.clip(rng.uniform() * o["scaling"] * sx, o["sig_min"], o["sig_max"]))
        return {"kernel_size": o["kernel_size"], "isotropic_sigma": 0.0, "anisotropic_x": sx,
                "anisotropic_y": sy, "anisotropic_pi": angle}

    def kernel(self, params: dict[str, Any]) -> np.ndarray:
        size = int(params["kernel_size"])
        if params["isotropic_sigma"] > 0:
            s = params["isotropic_sigma"]
            return make_kernel("iso", size, {"sigma_x": s, "sigma_y": s, "rotation": 0.0})
        return make_kernel("aniso", size, {"sigma_x": params["anisotropic_x"],
                                           "sigma_y": params["anisotropic_y"],
                                           "rotation": params["anisotropic_pi"]})

    def varies(self) -> bool:
        return bool(self.options["random"])

    def apply(self, img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return to_uint8(filter2d(img, self.kernel(params)))

    def ranges(self) -> dict[str, tuple[float, float]]:
        o = self.options
        return {"isotropic_sigma": (o["sig_min"], o["sig_max"]) if o["random"] else (0.0, o["sig"]),
                "anisotropic_x": (o["sig_min"], o["sig_max"]),
                "anisotropic_y": (o["sig_min"], o["sig_max"]), "anisotropic_pi": (0.0, math.pi)}
