"""`test_indices` on a training set: those samples leave training and are validated as their own
eval set, `<name>_test`, for every task and dataset kind; `limit_eval_batches` (dev mode) keeps
the first samples of each eval set. A checked set declares its per-sample
fields (PER_SAMPLE); the held-out part gets the kind's eval config (no crop, no augmentation)."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..config import ConfigError, RunConfig
from .kinds import DATASET_KINDS


def _take(checked, indices: list[int]):
    picked = {}
    for name in type(checked).PER_SAMPLE:
        value = getattr(checked, name)
        if value is None or (isinstance(value, list) and not value):
            continue
        picked[name] = value[np.asarray(indices)] if isinstance(value, np.ndarray) \
            else [value[i] for i in indices]
    return dataclasses.replace(checked, **picked)


def _eval_config(ds):
    cls = DATASET_KINDS.get(ds.type).eval_config
    shared = {f.name: getattr(ds, f.name) for f in dataclasses.fields(cls)
              if hasattr(ds, f.name) and f.name not in ("crop", "random_augment")}
    return cls(**{**shared, "name": f"{ds.name}_test", "test_indices": []})


def hold_out(cfg: RunConfig, train: list, evals: list, labels: list[str]) -> tuple[list, list]:
    """(training sets without their test samples, eval sets + one per held-out part)."""
    names = {e.name for e in evals}
    out_train = []
    for checked, label in zip(train, labels):
        ds = checked.config
        indices = ds.test_indices
        if not indices:
            out_train.append(checked)
            continue
        where = f"data.training_sets.{label}.test_indices"
        n = len(checked)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ConfigError(cfg.source, where, f"expected indices 0..{n - 1} (the set has {n} "
                                                 f"samples after cutoff), got {bad[0]}")
        if len(set(indices)) != len(indices):
            raise ConfigError(cfg.source, where, "expected each index once")
        if len(indices) == n:
            raise ConfigError(cfg.source, where, f"all {n} samples are held out: none is left "
                                                 f"to train on")
        test = _take(checked, sorted(indices))
        test = dataclasses.replace(test, name=f"{checked.name}_test", config=_eval_config(ds))
        if test.name in names:
            raise ConfigError(cfg.source, where, f"the held-out set would be named {test.name!r}, "
                                                 f"which an eval set already is")
        names.add(test.name)
        evals = [*evals, test]
        kept = sorted(set(range(n)) - set(indices))
        out_train.append(_take(checked, kept))
    limit = cfg.training.limit_eval_batches * cfg.data.eval_batch_size
    if limit:  # development mode: the first batches of each eval set
        evals = [_take(e, list(range(min(limit, len(e))))) for e in evals]
    return out_train, evals


def with_held_out(cfg: RunConfig, check, evals: list) -> list:
    """`evals` and the sets the node's training held out (test_indices), when its training
    data is still there to take them from (evaluation after training: `rumpy eval`)."""
    import logging

    labels = [label for label, ds in cfg.data.training_sets.items() if ds.test_indices]
    if not labels:
        return evals
    try:
        train = [check(cfg, "training_sets", label, cfg.data.training_sets[label])
                 for label in labels]
    except ConfigError as exc:
        logging.getLogger(__name__).warning(
            "the held-out test_indices sets are not evaluated: their training set cannot be "
            "read (%s)", exc)
        return evals
    return hold_out(cfg, train, evals, labels)[1]
