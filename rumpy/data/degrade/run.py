"""`rumpy degrade`: every HR image through the pipeline, `multiples` times, each time from a
generator seeded by (seed, the image's relative path, the copy's number), so the same config
gives identical files whatever the image order. Writes the LR images, degradation_metadata.csv
(one row per LR image, one column per parameter of every step, the values actually applied) and
degradation_config.toml (the resolved pipeline), and with a blur step drawing random kernels,
kernel_pca.npz (kernel_pca.py); all checks run before the first write."""
from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...config.errors import ConfigError
from ...utils.atomic import atomic_open, atomic_write_text, dir_mode
from ...utils.folders import folder_problem
from ..images import IMAGE_EXTENSIONS, image_size, read_rgb
from .blur import _Blur
from .config import Pipeline, Step, read_pipeline
from .kernel_pca import PCA_FILE, KernelPCA, blur_step, fit

log = logging.getLogger(__name__)

METADATA_FILE = "degradation_metadata.csv"
CONFIG_FILE = "degradation_config.toml"


def rng_for(seed: int, key: str, copy: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(key.encode()), copy]))


def degrade(img: np.ndarray, steps: list[Step], rng: np.random.Generator
            ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """HxWx3 uint8 through every step; (LR image, each step's parameters)."""
    applied = []
    for step in steps:
        params = step.op.sample(rng)
        img = step.op.apply(img, params)
        applied.append(params)
    return img, applied


def row_params(step: Step, row: dict[str, str]) -> dict[str, Any]:
    """A step's parameters as a metadata row records them (KeyError: a column is missing;
    ValueError: a value is not of its column's type)."""
    params = {}
    for key, kind in step.op.columns.items():
        value = row[step.column(key)]
        if kind is str and value.lstrip("-").isdigit():  # kernel_type as a code
            params[key] = int(value)
        else:
            params[key] = kind(float(value)) if kind is int else kind(value)
    for key, kind in getattr(step.op, "optional_columns", {}).items():
        if key not in params and step.column(key) in row:
            params[key] = kind(float(row[step.column(key)]))
    return params


def reapply(img: np.ndarray, steps: list[Step], row: dict[str, str]) -> np.ndarray:
    """HR image -> the LR image a metadata row describes (its parameters, no randomness)."""
    for step in steps:
        img = step.op.apply(img, row_params(step, row))
    return img


def _images(hr: Path, recursive: bool) -> list[Path]:
    pattern = hr.rglob("*") if recursive else hr.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _lr_name(rel: Path, copy: int, multiples: int, ext: str) -> str:
    stem = rel.with_suffix("").as_posix()
    return f"{stem}_q{copy}{ext}" if multiples > 1 else f"{stem}{ext}"


def check(p: Pipeline) -> list[Path]:
    """The HR images, once everything that could stop the run midway has been checked."""
    if not p.hr.is_dir():
        raise ConfigError(p.source, "source_dir", f"{p.hr} is not a folder")
    if p.out == p.hr or p.hr in p.out.parents:
        raise ConfigError(p.source, "output_dir", f"{p.out} is inside the HR folder {p.hr}: its "
                                                  f"images would be read back as HR; write "
                                                  f"elsewhere")
    problem = folder_problem(p.out)
    if problem:
        raise ConfigError(p.source, "output_dir", problem)
    if p.out.exists() and any(p.out.iterdir()):
        raise ConfigError(p.source, "output_dir", f"{p.out} already holds files; choose an empty "
                                                  f"or new folder")
    images = _images(p.hr, p.recursive)
    if not images:
        raise ConfigError(p.source, "source_dir", f"no images (png/jpg/bmp/tif) in {p.hr}"
                                                  + ("" if p.recursive else
                                                     " (recursive = true searches sub-folders)"))
    for path in images:
        try:
            h, w = image_size(path)
        except Exception as exc:
            raise ConfigError(p.source, "source_dir", f"cannot read {path}: {exc}") from None
        for step in p.steps:
            try:
                h, w = step.op.out_size(h, w)
            except ValueError as exc:
                raise ConfigError(p.source, f"pipeline[{step.index}]",
                                  f"{path.name} {exc}") from None
    return images


def _format(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def run(p: Pipeline) -> int:
    """Degrade the folder; returns how many LR images were written."""
    images = check(p)
    pca = _kernel_pca(p)
    # Written into a hidden folder and moved into place at the end: an interrupted run
    # (Ctrl+C, a full disk, a bad image) leaves no half-degraded output behind. A given empty
    # folder (perhaps a mount point) is kept and filled; a new one is renamed into place whole.
    final = p.out
    existed = final.is_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-",
                                dir=final if existed else final.parent))
    os.chmod(tmp, dir_mode())  # mkdtemp's 0700 would become the output's mode
    try:
        count = _write(p, images, pca, tmp)
        if existed:
            for entry in sorted(tmp.iterdir(), key=lambda e: e.name == METADATA_FILE):
                os.replace(entry, final / entry.name)  # the metadata last: it marks a whole set
            tmp.rmdir()
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d degraded images (%d HR x %d) to %s, with %s and %s%s", count,
             len(images), p.multiples, final, METADATA_FILE, CONFIG_FILE,
             f" ({PCA_FILE} too)" if pca is not None else "")
    return count


def _write(p: Pipeline, images: list[Path], pca: KernelPCA | None, folder: Path) -> int:
    """The LR images, metadata, config and kernel PCA, written into `folder`."""
    rows = []
    for path in images:
        rel = path.relative_to(p.hr)
        hr = read_rgb(path)
        for copy in range(p.multiples):
            lr, applied = degrade(hr, p.steps, rng_for(p.seed, rel.as_posix(), copy))
            name = _lr_name(rel, copy, p.multiples, p.output_extension)
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(target, "wb") as handle:
                Image.fromarray(lr).save(handle, format=Image.registered_extensions()[
                    p.output_extension.lower()])
            row = {"image": name}
            for step, params in zip(p.steps, applied):
                row.update({step.column(k): _format(v) for k, v in step.op.record(params).items()})
            rows.append(row)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["image"] + p.columns(), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / METADATA_FILE, text.getvalue())
    atomic_write_text(folder / CONFIG_FILE, resolved_toml(p))
    if pca is not None:
        pca.save(folder / PCA_FILE)
    return len(rows)


def _kernel_pca(p: Pipeline) -> KernelPCA | None:
    """The basis of the pipeline's kernel distribution, for `metadata = ["blur_kernel"]`; none
    when there is no single blur step drawing its kernels at random (a data set asking for the
    code then says why) or when the step sets request_pca_kernels = false (the original tool's
    switch; here it defaults to true)."""
    blurs = [s for s in p.steps if isinstance(s.op, _Blur)]
    if (len(blurs) != 1 or not blurs[0].op.varies()
            or not blurs[0].op.options["request_pca_kernels"]):
        return None
    return fit(blurs[0], p.seed, p.source, f"pipeline[{blurs[0].index}]")


def fit_folder(folder: Path) -> KernelPCA:
    """`rumpy degrade --fit-kernel-pca FOLDER`: (re)write the kernel PCA of a folder rumpy
    degrade wrote (before kernel_pca.npz existed), from its degradation_config.toml."""
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise ConfigError(str(folder), "", f"no {CONFIG_FILE}: --fit-kernel-pca takes a folder "
                                           f"written by rumpy degrade")
    p = read_pipeline(config, overrides={"hr": ".", "out": "."})
    step = blur_step(p.steps, str(config), "pipeline")
    pca = fit(step, p.seed, str(config), f"pipeline[{step.index}]")
    pca.save(folder / PCA_FILE)
    log.info("wrote %s (%d components of %dx%d kernels)", folder / PCA_FILE, pca.pca_length,
             pca.kernel_size, pca.kernel_size)
    return pca


def resolved_toml(p: Pipeline) -> str:
    import tomli_w

    head = ("# written by rumpy degrade: the resolved pipeline (every option), so\n"
            "# `rumpy degrade --pipeline_config` on this file makes the same images again\n")
    return head + tomli_w.dumps(p.resolved())
