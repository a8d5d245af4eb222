"""Per-image degradation metadata for paired sets (`degradation_metadata`, `metadata`): values
read from a `rumpy degrade` CSV (degradation_metadata.csv, one row per LR image), each named
parameter normalised to [0, 1] over its configured range (from degradation_config.toml beside
the CSV; without it, over the CSV's own minimum and maximum). `blur_kernel` is the image's blur
kernel as its PCA code (`pca_length` values, degrade/kernel_pca.py): the kernel rebuilt exactly
from the CSV's parameters, encoded with the first training set's basis (the one the model learns
the codes of; kernel_pca.npz beside its CSV, or fitted from its online pipeline), or, for DAN's
mode v2 (full_kernels), that kernel itself (kernel_size**2 values, the kernel that blurred the
image: the blur step's own `kernel` on the recorded parameters). Every problem
(no CSV, an unknown or ambiguous column, an image without a row, a value that is not a number, no
blur step, no basis) is a one-line ConfigError naming the set and, where it is about one image,
the image."""
from __future__ import annotations

import csv
import logging
import math
import re
from pathlib import Path

import numpy as np

from ..config import ConfigError, RunConfig
from ..registry import did_you_mean

log = logging.getLogger(__name__)

ON_SITE = "on_site"
CSV_NAME = "degradation_metadata.csv"
CONFIG_NAME = "degradation_config.toml"
KERNEL = "blur_kernel"
# the seed an online pipeline's kernel PCA is drawn with: rumpy degrade's default, so the same
# blur options give the basis of a folder degraded with the default seed, whatever the run's seed
ONLINE_PCA_SEED = 8
_LOADED: dict[tuple, object] = {}


def full_kernels(cfg: RunConfig) -> bool:
    """Whether `blur_kernel` gives each image's full kernel (flattened) instead of its PCA code:
    the target of DAN v2's estimator (models/dan.py)."""
    model = getattr(cfg, "model", None)
    arch = getattr(getattr(model, "internal_params", None), "arch", None) or {}
    return getattr(model, "name", None) == "dan" and arch.get("mode") == "v2"


def metadata_csv(cfg: RunConfig, ds) -> Path:
    if ds.degradation_metadata == ON_SITE:
        return Path(ds.lr) / CSV_NAME
    path = Path(ds.degradation_metadata).expanduser()
    return path if path.is_absolute() else (Path(cfg.source).resolve().parent / path)


def _ranges(csv_path: Path) -> dict[str, tuple[float, float]]:
    config = csv_path.parent / CONFIG_NAME
    if not config.is_file():
        return {}
    from .degrade import read_pipeline

    try:
        steps = read_pipeline(config, overrides={"hr": ".", "out": "."}).steps
    except ConfigError as exc:
        log.warning("%s: ranges not used (%s); normalising over the CSV's values", config, exc)
        return {}
    return {step.column(k): r for step in steps for k, r in step.op.ranges().items()}


_LOCATION = re.compile(r"^\d+-")  # a rumpy degrade column's step position: '1-' in '1-x'


def unlocated(name: str) -> str:
    """'1-realesrganblur-sigma_x' -> 'realesrganblur-sigma_x'."""
    return _LOCATION.sub("", name)


def _column(src: str, where: str, name: str, columns: list[str], csv_path: Path,
            ignore_location: bool = False) -> str:
    """The CSV column a `metadata` name means: the column of that name, or the one that ends
    with it. With ignore_degradation_location (the original tool's meaning: positions such as
    '1-' are removed from the CSV's columns and from the names), a name with a position matches
    the same step's parameter wherever this set's pipeline has it."""
    if ignore_location:
        name = unlocated(name)
        exact = [c for c in columns if unlocated(c) == name]
        matches = exact or [c for c in columns if unlocated(c).endswith(f"-{name}")]
        if len(matches) == 1:
            return matches[0]
    elif name in columns:
        return name
    else:
        matches = [c for c in columns if c.endswith(f"-{name}")]  # '0-realesrganblur-sigma_x'
    if len(matches) == 1:
        return matches[0]
    if matches:
        how = ("several steps give it: set ignore_degradation_location = false and name one "
               "in full" if ignore_location else "name one of them in full")
        raise ConfigError(src, f"{where}.metadata", f"{name!r} matches {', '.join(matches)} in "
                                                    f"{csv_path}: {how}")
    short = sorted({c.split("-", 2)[-1] for c in columns if c != "image"})
    raise ConfigError(src, f"{where}.metadata", f"no column {name!r} in {csv_path}"
                                                f"{did_you_mean(name, short)} (columns: "
                                                f"{', '.join(short)})")


def read_metadata(cfg: RunConfig, where: str, ds, lr_paths: list[Path]) -> np.ndarray | None:
    """N x M float32, row i for lr_paths[i], in the order of `ds.metadata`; None without it."""
    src = cfg.source
    if not ds.metadata:
        return None
    if not ds.degradation_metadata:
        raise ConfigError(src, f"{where}.degradation_metadata",
                          f"missing: metadata = {ds.metadata} needs the CSV: 'on_site' (the LR "
                          f"folder's {CSV_NAME}) or its path")
    csv_path = metadata_csv(cfg, ds)
    if not csv_path.is_file():
        raise ConfigError(src, f"{where}.degradation_metadata", f"file not found: {csv_path}")
    columns, rows = _read_csv(src, f"{where}.degradation_metadata", csv_path)
    if "image" not in columns:
        raise ConfigError(src, f"{where}.degradation_metadata",
                          f"{csv_path} has no 'image' column (a rumpy degrade CSV expected)")
    ignore = bool(getattr(ds, "ignore_degradation_location", False))
    chosen = [_column(src, where, name, columns, csv_path, ignore) for name in ds.metadata
              if name != KERNEL]
    by_name = {}
    for row in rows:
        by_name[row["image"]] = row
        by_name.setdefault(Path(row["image"]).stem, row)
    image_rows = []
    for path in lr_paths:
        row = by_name.get(path.name) or by_name.get(path.stem)
        if row is None:
            raise ConfigError(src, f"{where}.degradation_metadata",
                              f"image {path.name} has no row in {csv_path}")
        image_rows.append(row)
    configured = _ranges(csv_path)
    ranges = _column_ranges(rows, chosen, configured)
    values = np.zeros((len(lr_paths), len(chosen)), dtype=np.float64)
    for i, (path, row) in enumerate(zip(lr_paths, image_rows)):
        for j, column in enumerate(chosen):
            try:
                values[i, j] = float(row[column])
            except (TypeError, ValueError):
                raise ConfigError(src, f"{where}.metadata",
                                  f"image {path.name}: {column} is {row[column]!r} in "
                                  f"{csv_path}, not a number") from None
            low, high = configured.get(column, (-math.inf, math.inf))
            if not low - 1e-6 * abs(low) <= values[i, j] <= high + 1e-6 * abs(high):
                raise ConfigError(src, f"{where}.metadata",
                                  f"image {path.name}: {column} is {row[column]} in {csv_path}, "
                                  f"outside the range [{low}, {high}] of the {CONFIG_NAME} "
                                  f"beside it (the CSV and the pipeline that made it disagree)")
    scalars = iter(normalise(values, [ranges[c] for c in chosen]).T)
    parts = []
    for name in ds.metadata:
        if name == KERNEL:
            basis = kernel_basis(cfg, where, ds)
            kernels = _csv_kernels(src, where, csv_path, columns, lr_paths, image_rows,
                                   basis.kernel_size)
            parts.append(kernels.reshape(len(kernels), -1) if full_kernels(cfg) else
                         basis.normalise(basis.encode(kernels)))
        else:
            parts.append(next(scalars)[:, None])
    return np.concatenate(parts, axis=1).astype(np.float32)


def _read_csv(src: str, key: str, csv_path: Path) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a metadata CSV; a file that is not UTF-8 CSV is a one-line error."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(src, key, f"{csv_path} is not a CSV file rumpy degrade wrote "
                                    f"({type(exc).__name__}: {exc})"[:300]) from None
    except OSError as exc:
        raise ConfigError(src, key, f"cannot read {csv_path}: {exc.strerror or exc}") from None


def _csv_kernels(src: str, where: str, csv_path: Path, columns: list[str], lr_paths: list[Path],
                 rows: list[dict], size: int) -> np.ndarray:
    """Each image's blur kernel, rebuilt from the parameters its CSV row records."""
    from .degrade.blur import _Blur
    from .degrade.config import Step
    from .degrade.registry import DEGRADATIONS
    from .degrade.run import row_params

    steps = {}
    for column in columns:
        m = _DEGRADE_COLUMN.match(column)
        if m and m[2] in DEGRADATIONS and issubclass(DEGRADATIONS.get(m[2]), _Blur):
            steps[int(m[1])] = m[2]
    if len(steps) != 1:
        found = ", ".join(f"{i}-{n}" for i, n in sorted(steps.items()))
        raise ConfigError(src, f"{where}.metadata",
                          f"'blur_kernel' needs one blur step (realesrganblur or "
                          f"srmdgaussianblur) in the pipeline that made {csv_path}; it has "
                          f"{found or 'none'}")
    (index, name), = steps.items()
    step = Step(index, name, name, DEGRADATIONS.get(name)({}, 1, src, f"{where}.metadata"))
    kernels = np.empty((len(rows), size, size))
    for i, (path, row) in enumerate(zip(lr_paths, rows)):
        try:
            kernel = step.op.kernel(row_params(step, row))
        except KeyError as exc:
            raise ConfigError(src, f"{where}.metadata",
                              f"{csv_path} has no column {exc.args[0]!r}: the kernels of its "
                              f"{name} step cannot be rebuilt") from None
        except (TypeError, ValueError, IndexError, np.linalg.LinAlgError) as exc:
            raise ConfigError(src, f"{where}.metadata",
                              f"image {path.name}: its kernel cannot be rebuilt from {csv_path} "
                              f"({exc})") from None
        if kernel.shape != (size, size):
            raise ConfigError(src, f"{where}.metadata",
                              f"image {path.name}: its kernel is {kernel.shape[0]}x"
                              f"{kernel.shape[1]}, the kernel PCA is for {size}x{size} kernels "
                              f"(blur every set with the same kernel_size)")
        kernels[i] = kernel
    return kernels


def _basis_set(cfg: RunConfig, where: str, ds) -> tuple[str, object]:
    """The set whose kernel PCA codes mean something to the model: the first training set when
    it asks for blur_kernel, else the set itself."""
    name, first = next(iter(cfg.data.training_sets.items()))
    if KERNEL in (getattr(first, "metadata", []) or []):
        return f"data.training_sets.{name}", first
    return where, ds


def _online_blur_step(cfg: RunConfig, where: str, ds):
    from .degrade.config import steps_from_table
    from .degrade.kernel_pca import blur_step

    try:
        steps = steps_from_table(cfg.source, ds.degradations, (cfg.scale or 1))
    except ConfigError as exc:
        raise ConfigError(cfg.source, f"{where}.degradations.{exc.key_path}", exc.message) from None
    return blur_step(steps, cfg.source, f"{where}.metadata")


def kernel_basis(cfg: RunConfig, where: str, ds):
    """The KernelPCA a set's kernels are encoded with (degrade/kernel_pca.py)."""
    from .degrade.kernel_pca import PCA_FILE, blur_step, fit, load

    src = cfg.source
    where, ds = _basis_set(cfg, where, ds)
    if getattr(ds, "degradations", None):
        return fit(_online_blur_step(cfg, where, ds), ONLINE_PCA_SEED, src, f"{where}.metadata")
    folder = metadata_csv(cfg, ds).parent
    path = folder / PCA_FILE
    if not path.is_file():
        config = folder / CONFIG_NAME
        if config.is_file():  # say what is wrong with the pipeline before offering to fit it
            from .degrade import read_pipeline

            try:
                steps = read_pipeline(config, overrides={"hr": ".", "out": "."}).steps
            except ConfigError:
                steps = None
            if steps is not None:
                step = blur_step(steps, src, f"{where}.metadata")
                if not step.op.varies():
                    fit(step, 0, src, f"{where}.metadata")  # raises: a fixed kernel
        raise ConfigError(src, f"{where}.metadata",
                          f"'blur_kernel' needs {path}, the kernel PCA rumpy degrade writes "
                          f"beside {CSV_NAME} (this folder predates it); make it with: rumpy "
                          f"degrade --fit-kernel-pca {folder}")
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = load(path, src, f"{where}.metadata")
    return _LOADED[key]


def pca_length(cfg: RunConfig, where: str, ds) -> int:
    """How many values blur_kernel gives in this set (its basis's pca_length)."""
    basis_where, basis_ds = _basis_set(cfg, where, ds)
    if getattr(basis_ds, "degradations", None):  # the option, without fitting
        return int(_online_blur_step(cfg, basis_where, basis_ds).op.options["pca_length"])
    return kernel_basis(cfg, where, ds).pca_length


def normalise(values: np.ndarray, ranges: list[tuple[float, float]]) -> np.ndarray:
    """N x M raw values -> [0, 1] over each column's (low, high)."""
    out = np.zeros(values.shape, dtype=np.float64)
    for j, (low, high) in enumerate(ranges):
        out[:, j] = (values[:, j] - low) / (high - low) if high > low else 0.0
    return out.astype(np.float32)


def _column_ranges(rows: list[dict], chosen: list[str], ranges: dict) -> dict:
    ranges = dict(ranges)
    for column in chosen:
        if column not in ranges:  # no pipeline config beside the CSV: the values' own span
            all_values = [float(r[column]) for r in rows if _is_number(r.get(column))]
            ranges[column] = (min(all_values), max(all_values))
    return ranges


def metadata_ranges(cfg: RunConfig, where: str, ds) -> list[tuple[float, float]]:
    """The (low, high) each of the set's `metadata` values is normalised over."""
    csv_path = metadata_csv(cfg, ds)
    columns, rows = _read_csv(cfg.source, f"{where}.degradation_metadata", csv_path)
    if KERNEL in ds.metadata:
        raise ConfigError(cfg.source, f"{where}.metadata",
                          "'blur_kernel' (a kernel's PCA code) has no range in the parameters' "
                          "units: name the kernel's parameters (sigma_x, ...) to use predicted "
                          "metadata")
    chosen = [_column(cfg.source, where, name, columns, csv_path,
                      bool(getattr(ds, "ignore_degradation_location", False)))
              for name in ds.metadata]
    ranges = _column_ranges(rows, chosen, _ranges(csv_path))
    return [ranges[c] for c in chosen]


_DEGRADE_COLUMN = re.compile(r"^(\d+)-([a-z0-9_]+)-(.+)$")


def target_names(columns: list[str]) -> list[str]:
    """Names for `rumpy degrade` CSV columns used as regression targets: the parameter
    ('0-realesrganblur-sigma_x' -> 'sigma_x'; summary columns cannot hold '-'), with the
    operation ('realesrganblur_sigma_x') or also the step when that is not unique. Other
    columns keep their names."""
    parts = [_DEGRADE_COLUMN.match(c) for c in columns]
    for form in (lambda m: m[3], lambda m: f"{m[2]}_{m[3]}", lambda m: f"{m[1]}_{m[2]}_{m[3]}"):
        names = [form(m) if m else c for m, c in zip(parts, columns)]
        if len(set(names)) == len(names):
            return names
    return list(columns)


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def metadata_length(cfg: RunConfig) -> int:
    """How many metadata values a conditioned model takes: the training sets' `metadata`, with
    `pca_length` values for blur_kernel."""
    sets = list(cfg.data.training_sets.items())
    if not sets:
        return 0
    name, ds = sets[0]
    names = list(getattr(ds, "metadata", []) or [])
    if KERNEL not in names:
        return len(names)
    return len(names) - 1 + pca_length(cfg, f"data.training_sets.{name}", ds)


def check_use(cfg: RunConfig, train: list, evals: list, takes_metadata: bool) -> None:
    """Every set delivers the same metadata when the model is conditioned on it."""
    names = {s.name: list(getattr(s.config, "metadata", []) or []) for s in train + evals}
    first = next(iter(cfg.data.training_sets))
    wanted = list(getattr(cfg.data.training_sets[first], "metadata", []) or [])
    if takes_metadata:
        if not wanted:
            raise ConfigError(cfg.source, f"data.training_sets.{first}.metadata",
                              f"{cfg.model.name} is conditioned on degradation metadata: give "
                              f"metadata = [\"sigma_x\", ...] and degradation_metadata = "
                              f"\"on_site\" (or the CSV's path)")
        for s in train + evals:
            if names[s.name] != wanted:
                section = "training_sets" if s in train else "eval_sets"
                raise ConfigError(cfg.source, f"data.{section}.{s.name}.metadata",
                                  f"set {s.name} gives {names[s.name]}, the model takes "
                                  f"{wanted} (every set the same, in the same order)")
    else:
        given = next((s for s in train + evals if names[s.name]), None)
        if given is not None:  # the original tool's configs set it for every model: a warning
            section = "training_sets" if given in train else "eval_sets"
            log.warning("data.%s.%s.metadata: %s takes no degradation metadata, so the sets' "
                        "metadata is not used (`rumpy models` marks the conditioned models)",
                        section, given.name, cfg.model.name)


def normalisation(cfg: RunConfig, where: str, ds) -> dict | None:
    """What a set's metadata values mean to the model: each named column's [low, high] and, for
    `blur_kernel`, the kernel PCA basis (its digest). A node keeps it in its checkpoints, so a
    continue that would read the same files differently (a degradation_config.toml removed, a
    basis refitted) is refused instead of training on silently renormalised inputs."""
    if not getattr(ds, "metadata", None) or getattr(ds, "degradations", None):
        return None  # online sets draw their metadata from their own config
    csv_path = metadata_csv(cfg, ds)
    columns, rows = _read_csv(cfg.source, f"{where}.degradation_metadata", csv_path)
    ignore = bool(getattr(ds, "ignore_degradation_location", False))
    chosen = [_column(cfg.source, where, n, columns, csv_path, ignore) for n in ds.metadata
              if n != KERNEL]
    ranges = _column_ranges(rows, chosen, _ranges(csv_path))
    # without the step positions when they are ignored: the same parameter at another position
    # (another pipeline, a later continue) means the same to the model
    out: dict = {"columns": [unlocated(c) for c in chosen] if ignore else chosen,
                 "ranges": [list(map(float, ranges[c])) for c in chosen]}
    if KERNEL in ds.metadata:
        import hashlib

        basis = kernel_basis(cfg, where, ds)
        digest = hashlib.sha256()
        for array in (basis.mean, basis.components, basis.code_min, basis.code_max):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        out["kernel_pca_sha256"] = digest.hexdigest()
    return out


def normalisation_change(before: dict, now: dict) -> str | None:
    """How a set's metadata normalisation changed since a checkpoint (None: unchanged)."""
    if before.get("columns") != now.get("columns"):
        return f"its columns were {before.get('columns')}, now {now.get('columns')}"
    for column, old, new in zip(now["columns"], before.get("ranges", []), now["ranges"]):
        if not np.allclose(old, new, rtol=1e-9, atol=0):
            return f"{column} was normalised over {old}, now over {new}"
    if before.get("kernel_pca_sha256") != now.get("kernel_pca_sha256"):
        return "its blur_kernel codes come from another kernel PCA basis (kernel_pca.npz)"
    return None
