"""summary.csv column names, in one place: how they are made from (eval set, metric, target),
and how a column is read back into those parts and its direction (from the metric's own
declaration, not from a table of suffixes).

    step, data-epoch                           a step-based run's position (its epochs are
                                               validation periods: config/periods.py)
    train-loss, learning-rate                  training
    learning-rate-<network>                    another network's rate (a GAN's discriminator)
    train-<term>                               a loss term of a task with several networks
                                               (train-loss-l1, train-loss-gan, train-loss-d)
    val-<metric>[-<target>]                    the first eval set
    val-<set>-<metric>[-<target>]              the other eval sets
    val-raw-...                                the raw weights' scores beside the EMA's
                                               (training.validate_ema = "both")
"""
from __future__ import annotations

from dataclasses import dataclass

from ..metrics import higher_is_better, metric_names


@dataclass(frozen=True)
class Column:
    subset: str                # 'train', 'val', or 'val_raw' (validate_ema = "both")
    metric: str                # 'loss', 'PSNR', 'learning_rate', 'epoch_time', ...
    set: str | None = None     # the eval set (None: the first one, when the sets are unknown)
    target: str | None = None  # a regression target, for per-target columns


def set_prefix(index: int, name: str) -> str:
    return "val-" if index == 0 else f"val-{name}-"


GRAD_COLUMNS = ["grad-norm-mean", "grad-norm-max"]
STEP_COLUMNS = ("step", "data-epoch")


def summary_columns(keys: list[str], eval_sets: list[str], log_grad: bool = False,
                    train_terms: list[str] = (), raw: bool = False) -> list[str]:
    """epoch, train-loss, the loss terms, learning-rate (and the gradient norms), then the
    task's keys for each eval set (and the raw weights' beside the EMA's), then the timing and
    inherited columns (results/summary.py)."""
    from .summary import INHERITED, TIMING_COLUMNS

    cols = ["epoch", "train-loss", *[f"train-{t}" for t in train_terms], "learning-rate"]
    cols += GRAD_COLUMNS if log_grad else []
    val = []
    for i, name in enumerate(eval_sets):
        val += [f"{set_prefix(i, name)}{k}" for k in keys]
    if raw:
        val += [raw_column(c) for c in val]
    return cols + val + list(TIMING_COLUMNS) + [INHERITED]


def raw_column(column: str) -> str:
    """val-PSNR -> val-raw-PSNR: the raw weights' score when the EMA's is validated too."""
    return "val-raw-" + column[len("val-"):]


def eval_columns(means: dict[str, dict[str, float]], eval_sets: list[str]) -> dict[str, float]:
    """{set: {key: value}} -> {column: value}."""
    row = {}
    for i, name in enumerate(eval_sets):
        for key, value in means.get(name, {}).items():
            row[f"{set_prefix(i, name)}{key}"] = value
    return row


_TRAIN = {"train-loss": "loss", "learning-rate": "learning_rate", "epoch-time": "epoch_time",
          "data-wait": "data_wait",
          "grad-norm-mean": "grad_norm_mean", "grad-norm-max": "grad_norm_max"}


def parse(column: str, eval_sets: list[str] | None = None,
          extra: tuple[str, ...] = ()) -> Column | None:
    """The parts of a summary column, or None for epoch/inherited and unknown names. The metric
    is the last part that names a registered metric (or 'loss', or one of `extra`: a node's own
    metric names)."""
    if column in _TRAIN:
        return Column("train", _TRAIN[column])
    if column.startswith("learning-rate-"):  # another network's (a GAN's discriminator)
        return Column("train", "learning_rate", target=column[len("learning-rate-"):])
    if column.startswith("train-"):  # a loss term: train-loss-l1, train-loss-d
        return Column("train", column[len("train-"):])
    if not column.startswith("val-"):
        return None
    rest, subset = column[len("val-"):], "val"
    if rest.startswith("raw-") and "raw" not in (eval_sets or [])[1:]:
        rest, subset = rest[len("raw-"):], "val_raw"  # the raw weights' beside the EMA's
    name = None
    for candidate in sorted((eval_sets or [])[1:], key=len, reverse=True):  # 'b-c' before 'b'
        if rest.startswith(f"{candidate}-"):
            name, rest = candidate, rest[len(candidate) + 1:]
            break
    known = {m.lower(): m for m in [*metric_names(), *extra]} | {"loss": "loss"}
    parts = rest.split("-")
    found = [i for i, p in enumerate(parts) if p.lower() in known]
    if not found:
        return None
    i = found[0] if name is not None or eval_sets else found[-1]
    if name is None and i > 0:
        name = "-".join(parts[:i])
    if name is None and eval_sets:
        name = eval_sets[0]
    target = "-".join(parts[i + 1:]) or None
    return Column(subset, known[parts[i].lower()], name, target)


def direction(column: str, directions: dict[str, str] | None = None) -> str | None:
    """'max' or 'min' by the column's metric, None when it names no metric. `directions`: a
    node's own (a 'model' task's metrics, recorded in status.json) before the registry's."""
    info = parse(column, extra=tuple(directions or ()))
    if info is None:
        return None
    if directions and info.metric in directions:
        return directions[info.metric]
    if info.subset == "train" and info.metric.startswith("loss"):
        return "min"
    higher = higher_is_better(info.metric)
    return None if higher is None else ("max" if higher else "min")


def resolve(name: str, columns: list[str]) -> str:
    """A column as a user may write it: 'PSNR' means the first eval set's 'val-PSNR'."""
    if name not in columns and f"val-{name}" in columns:
        return f"val-{name}"
    return name


# Not metrics: left out of the columns an error lists.
_NOT_METRICS = {"epoch", "inherited", *STEP_COLUMNS}


def find_column(name: str, columns: list[str]) -> str:
    """The summary column a user means by `name`, for every command that takes one (plot,
    export --best): exact, 'PSNR' for the first eval set's 'val-PSNR', or a unique match that
    differs only in case. KeyError listing the columns when there is none."""
    name = resolve(name, columns)
    if name in columns:
        return name
    folded = [c for c in columns if c.lower() in (name.lower(), f"val-{name}".lower())]
    if len(folded) == 1:
        return folded[0]
    from ..registry import did_you_mean

    shown = [c for c in columns if c not in _NOT_METRICS]
    hint = did_you_mean(name, shown) or did_you_mean(f"val-{name}", shown)
    raise KeyError(f"no column {name!r}{hint} (columns: "
                   f"{', '.join(shown) or 'none'})")

