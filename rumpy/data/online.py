"""Online degradation: a training set with `hr` and a `degradations` table (a `rumpy degrade`
pipeline) and no `lr` makes each LR patch on the fly from its HR patch. The HR patch is cropped
and augmented first, then degraded, so a kernel's recorded angle is the one applied. Every
random choice comes from a generator seeded by (seed, epoch, index), so an epoch is the same
whichever worker loads it and a resumed run repeats exactly what an uninterrupted one does.
Conditioned models get the applied parameters, normalised over the configured ranges, and for
`blur_kernel` the applied kernel's PCA code (degrade/kernel_pca.py), or the kernel itself for
DAN's mode v2 (metadata.full_kernels)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, RunConfig
from ..registry import did_you_mean
from .degrade.config import Step, steps_from_table
from .degrade.kernel_pca import KernelPCA, blur_step
from .metadata import KERNEL, full_kernels, kernel_basis


@dataclass
class OnlineDegradation:
    steps: list[Step]
    columns: list[tuple[int, str | None]]     # metadata: (step position, parameter); None: the
    ranges: list[tuple[float, float]]         # step's kernel as its PCA code
    pca: KernelPCA | None = None
    full_kernel: bool = False                 # blur_kernel: the kernel's k*k values, not a code

    def __call__(self, hr: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        img, applied = hr, []
        for step in self.steps:
            params = step.op.sample(rng)
            img = step.op.apply(img, params)
            applied.append(params)
        if not self.columns:
            return img, None
        values = []
        for (i, key), (low, high) in zip(self.columns, self.ranges):
            if key is None:
                kernel = self.steps[i].op.kernel(applied[i])[None]
                values.extend(kernel.ravel() if self.full_kernel else
                              self.pca.normalise(self.pca.encode(kernel))[0])
                continue
            v = float(applied[i][key])
            values.append((v - low) / (high - low) if high > low else 0.0)
        return img, np.asarray(values, dtype=np.float32)

    def sample(self, rng: np.random.Generator) -> list[dict]:
        """One draw of every step's parameters (the draws __call__ makes, in its order)."""
        return [step.op.sample(rng) for step in self.steps]

    def apply(self, hr: np.ndarray, applied: list[dict]) -> np.ndarray:
        """The drawn degradation applied to a patch (the same draw may degrade several)."""
        img = hr
        for step, params in zip(self.steps, applied):
            img = step.op.apply(img, params)
        return img


def check_online(cfg: RunConfig, where: str, ds) -> OnlineDegradation:
    """The set's pipeline, checked: one downsample step at the model's scale, and the named
    metadata among its numeric parameters."""
    try:
        steps = steps_from_table(cfg.source, ds.degradations, (cfg.scale or 1))
    except ConfigError as exc:
        raise ConfigError(cfg.source, f"{where}.degradations.{exc.key_path}", exc.message) from None
    downs = [s for s in steps if s.name == "downsample"]
    if len(downs) != 1 or any(s.name == "upsample" for s in steps):
        raise ConfigError(cfg.source, f"{where}.degradations.pipeline",
                          "expected exactly one 'downsample' step (and no 'upsample'): the LR "
                          "patch must be the HR patch / scale")
    if not ds.crop:
        raise ConfigError(cfg.source, f"{where}.crop", "online degradation works on patches: "
                                                       "give crop > 0")
    if ds.test_indices:
        raise ConfigError(cfg.source, f"{where}.test_indices", "not available with online "
                                                               "degradation (no fixed LR images "
                                                               "to validate on)")
    size = ds.crop * (cfg.scale or 1)
    for step in steps:
        try:
            size = min(step.op.out_size(size, size))
        except ValueError as exc:
            raise ConfigError(cfg.source, f"{where}.crop",
                              f"an HR patch of {ds.crop * (cfg.scale or 1)} pixels {exc}") from None
    columns, ranges, pca = [], [], None
    named = {f"{s.column(k)}": (i, k) for i, s in enumerate(steps) for k in s.op.columns}
    for name in ds.metadata:
        if name == KERNEL:
            step = blur_step(steps, cfg.source, f"{where}.metadata")
            pca = kernel_basis(cfg, where, ds)
            if pca.kernel_size != step.op.options["kernel_size"]:
                raise ConfigError(cfg.source, f"{where}.degradations.deg_configs",
                                  f"kernel_size {step.op.options['kernel_size']}: the kernel PCA "
                                  f"the model's codes come from is for {pca.kernel_size}x"
                                  f"{pca.kernel_size} kernels (blur every set with the same "
                                  f"kernel_size)")
            columns.append((steps.index(step), None))
            ranges.append((0.0, 1.0))
            continue
        matches = [c for c in named if c == name or c.endswith(f"-{name}")]
        if len(matches) != 1:
            short = sorted({c.split("-", 2)[-1] for c in named})
            why = (f"matches {', '.join(matches)}: name one in full" if matches else
                   f"is not a parameter of the pipeline{did_you_mean(name, short)} "
                   f"(parameters: {', '.join(short)})")
            raise ConfigError(cfg.source, f"{where}.metadata", f"{name!r} {why}")
        i, key = named[matches[0]]
        if steps[i].op.columns[key] is str:
            raise ConfigError(cfg.source, f"{where}.metadata", f"{name!r} is not a number")
        columns.append((i, key))
        ranges.append(steps[i].op.ranges().get(key, (0.0, 1.0)))
    return OnlineDegradation(steps, columns, ranges, pca, full_kernels(cfg))
