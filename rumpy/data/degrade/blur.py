"""Blur steps: `realesrganblur` (Real-ESRGAN's kernel family, isotropic/anisotropic Gaussian,
generalized, plateau, sinc) and `srmdgaussianblur` (SRMD's isotropic or anisotropic Gaussian).
Parameters are drawn uniformly over the configured ranges; the CSV holds the values applied (in
pixels and radians), normalised to [0, 1] only when a data set reads them."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

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


@DEGRADATIONS.register("realesrganblur")
class RealESRGANBlur(_Blur):
    name = "realesrganblur"
    # the original tool's defaults
    defaults = {"kernel_range": ["iso"], "kernel_probabilities": [], "kernel_size": 21,
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
            kinds = o["kernel_range"]
            probs = np.asarray(o["kernel_probabilities"] or [1.0] * len(kinds), dtype=float)
            kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
            p = {k: float(rng.uniform(*self.bounds[k])) for k in _PARAMS}
        if kind.endswith("iso") and not kind.endswith("aniso"):
            p["sigma_y"], p["rotation"] = p["sigma_x"], 0.0
        # parameters the kernel does not use are recorded as 0, as the original tool does
        used = {"sinc": ("omega_c",)}.get(kind, ("sigma_x", "sigma_y", "rotation") + (
            ("beta_g",) if kind.startswith("generalized") else
            ("beta_p",) if kind.startswith("plateau") else ()))
        p = {k: (v if k in used else 0.0) for k, v in p.items()}
        return {"kernel_type": kind, "kernel_size": o["kernel_size"], **p}

    def kernel(self, params: dict[str, Any]) -> np.ndarray:
        kind = params["kernel_type"]
        if isinstance(kind, (int, float)):
            kind = KERNEL_TYPES[int(kind)]
        return make_kernel(kind, int(params["kernel_size"]), params)

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
