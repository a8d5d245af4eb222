"""Blind evaluation (`rumpy eval SR_NODE --metadata-from PREDICTOR_NODE`): a conditioned SR
node scored with the degradation metadata another node (a regressor) predicts from each LR image instead
of the recorded one, so predict-then-super-resolve is measured end to end. Predictions (in the
parameters' own units) are normalised over the eval set's configured ranges, as the recorded
values are, and clipped to [0, 1], the span the SR model was trained on."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..data.metadata import metadata_ranges, normalise
from .load import InferenceError, load_experiment

log = logging.getLogger(__name__)


def _key(name: str) -> str:
    return name.replace("-", "_")


def _match(wanted: list[str], targets: list[str], predictor: Path) -> list[int]:
    """For each SR metadata name, the predictor target that estimates it."""
    index = []
    for name in wanted:
        k = _key(name)
        hits = [j for j, t in enumerate(targets)
                if _key(t) == k or k.endswith("_" + _key(t)) or _key(t).endswith("_" + k)]
        if len(hits) != 1:
            raise InferenceError(f"{predictor}: {'no' if not hits else 'more than one'} target "
                                 f"for the metadata value {name!r} (its targets: "
                                 f"{', '.join(targets)})")
        index.append(hits[0])
    return index


def use_predicted_metadata(task, cfg, predictor: str | Path, device) -> None:
    """Replace the eval sets' recorded metadata by the predictor's estimates."""
    from .prediction import predict

    model = load_experiment(predictor, device=device)
    info = model.rumpy
    targets = info.facts.get("target_names")
    if not targets:
        raise InferenceError(f"{info.path} is a {info.task} node; --metadata-from takes a node "
                             f"that predicts named targets (the degradation's parameters)")
    wanted = list(next(iter(cfg.data.training_sets.values())).metadata)
    index = _match(wanted, list(targets), info.path)
    for name, paths, config, recorded in task.metadata_inputs():
        raw = np.stack([np.asarray(predict(model, str(p)))[index] for p in paths])
        ranges = metadata_ranges(cfg, f"data.eval_sets.{name}", config)
        values = np.clip(normalise(raw, ranges), 0.0, 1.0)
        if recorded is not None:
            error = np.abs(values - recorded).mean()
            log.info("%s: predicted metadata from %s, mean absolute error %.4f (normalised) "
                     "against the recorded values", name, info.path, error)
        task.set_metadata(name, values)
