"""Blur kernels as PCA codes (`metadata = ["blur_kernel"]`), as the original tool's
`request_pca_kernels`: a PCA fitted once on `pca_batch_len` kernels drawn from the blur step's
configured distribution, keeping `pca_length` components (both options of that step). The draw
is seeded by the pipeline's seed, so the same config gives the same basis, and `rumpy degrade`
saves it beside the data as kernel_pca.npz. Unlike the original, the mean kernel is subtracted
before projecting, so mean + code @ components reconstructs the kernel; data sets hand the code
on normalised to [0, 1] per component over its span on the fitted sample."""
from __future__ import annotations

import io
import json
import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...config.errors import ConfigError
from ...utils.atomic import atomic_write_bytes
from .blur import _Blur
from .config import Step

log = logging.getLogger(__name__)

PCA_FILE = "kernel_pca.npz"
_ARRAYS = ("mean", "components", "explained_variance", "code_min", "code_max")
_CACHE: dict[tuple, "KernelPCA"] = {}


@dataclass(frozen=True)
class KernelPCA:
    mean: np.ndarray                # k*k, the mean kernel of the fitted sample
    components: np.ndarray          # pca_length x k*k, orthonormal rows, largest variance first
    explained_variance: np.ndarray  # pca_length
    code_min: np.ndarray            # pca_length: each component's span on the fitted sample,
    code_max: np.ndarray            # the range codes are normalised over
    kernel_size: int
    seed: int
    n_samples: int
    operation: str                  # the blur step's operation and resolved options, so a
    options: str                    # folder's basis can be traced to the config it came from

    @property
    def pca_length(self) -> int:
        return len(self.components)

    def encode(self, kernels: np.ndarray) -> np.ndarray:
        """N x k x k kernels -> N x pca_length codes."""
        flat = np.asarray(kernels, dtype=np.float64).reshape(len(kernels), -1)
        return (flat - self.mean) @ self.components.T

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """N x pca_length codes -> N x k x k kernels (the projection onto the basis)."""
        flat = self.mean + np.asarray(codes, dtype=np.float64) @ self.components
        return flat.reshape(len(flat), self.kernel_size, self.kernel_size)

    def normalise(self, codes: np.ndarray) -> np.ndarray:
        span = self.code_max - self.code_min
        safe = np.where(span > 0, span, 1.0)
        return np.where(span > 0, (codes - self.code_min) / safe, 0.0)

    def to_bytes(self) -> bytes:
        """The .npz's bytes, with fixed timestamps: the same basis gives the same file."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        arrays.update(kernel_size=np.int64(self.kernel_size), seed=np.int64(self.seed),
                      n_samples=np.int64(self.n_samples), operation=np.str_(self.operation),
                      options=np.str_(self.options))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name, value in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
                z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                           buf.getvalue())
        return out.getvalue()

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, self.to_bytes())


def load(path: Path, source: str, where: str) -> KernelPCA:
    try:
        with np.load(path, allow_pickle=False) as z:
            return KernelPCA(*(np.asarray(z[n], dtype=np.float64) for n in _ARRAYS),
                             int(z["kernel_size"]), int(z["seed"]), int(z["n_samples"]),
                             str(z["operation"]), str(z["options"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ConfigError(source, where, f"cannot read the kernel PCA {path} ({exc}); make it "
                                         f"again with: rumpy degrade --fit-kernel-pca "
                                         f"{path.parent}") from None


def blur_step(steps: list[Step], source: str, where: str) -> Step:
    """The pipeline's one blur step (the kernel a code describes)."""
    blurs = [s for s in steps if isinstance(s.op, _Blur)]
    if not blurs:
        raise ConfigError(source, where, "'blur_kernel' needs a blur step (realesrganblur or "
                                         "srmdgaussianblur) in the pipeline; it has "
                                         f"{', '.join(s.name for s in steps) or 'no steps'}")
    if len(blurs) > 1:
        raise ConfigError(source, where, f"'blur_kernel' needs one blur step; the pipeline has "
                                         f"{len(blurs)} ({', '.join(f'{s.index}-{s.name}' for s in blurs)}), "
                                         f"whose combined blur is not one of their kernels")
    return blurs[0]


def fit(step: Step, seed: int, source: str, where: str) -> KernelPCA:
    """The basis of the step's kernel distribution (cached: a config is fitted once)."""
    op = step.op
    if not op.varies():
        raise ConfigError(source, where, f"'blur_kernel': the {step.name} step's kernel is fixed "
                                         f"({'random_selection' if step.name == 'realesrganblur' else 'random'}"
                                         f" = false), so every image's code would be the same; "
                                         f"name the kernel's parameters or draw kernels at random")
    options = json.dumps(op.resolved(), sort_keys=True)
    key = (step.name, options, seed)
    if key not in _CACHE:
        _CACHE[key] = _fit(op, seed, step.name, options)
    return _CACHE[key]


def _fit(op: _Blur, seed: int, name: str, options: str) -> KernelPCA:
    n, length, size = op.options["pca_batch_len"], op.options["pca_length"], op.options["kernel_size"]
    # its own stream: no image's parameters come from it (run.py keys those by file name)
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(b"kernel_pca")]))
    sample = np.empty((n, size * size))
    for i in range(n):
        sample[i] = op.kernel(op.sample(rng)).ravel()
    mean = sample.mean(axis=0)
    centred = sample - mean
    # eigenvectors of the k*k x k*k covariance: cheaper than an SVD of the n x k*k sample
    values, vectors = np.linalg.eigh(centred.T @ centred / max(n - 1, 1))
    order = np.argsort(values)[::-1][:length]
    components = vectors[:, order].T
    # an eigenvector's sign is arbitrary: fix it (largest entry positive) so the basis is reproducible
    signs = np.sign(components[np.arange(length), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    codes = centred @ components.T
    log.info("kernel PCA: %d components of %d %s kernels (%dx%d) keep %.2f%% of their variance",
             length, n, name, size, size,
             100.0 * values[order].sum() / max(values.sum(), np.finfo(float).tiny))
    return KernelPCA(mean, components, np.clip(values[order], 0.0, None), codes.min(axis=0),
                     codes.max(axis=0), size, seed, n, name, options)
