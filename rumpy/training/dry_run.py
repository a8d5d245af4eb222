"""One training step and the whole learning-rate schedule, tried on copies before the run folder
is touched: a setting that would fail at the first step (a scheduler parameter of the wrong type,
a schedule that steps past its total, sizes that build but cannot run forward) fails here, as a
config error, and nothing the user has is changed. The RNG state is restored afterwards, so the
real run is the same as without the dry run."""
from __future__ import annotations

import copy
import math
import warnings

import torch

from ..core.checkpoint import rng_state, set_rng_state
from .handler import NetworkHandler


MAX_WALK = 200_000  # scheduler steps: about a second


def first_batch(loader) -> dict:
    """The first training batch of epoch 1, built in this process (no workers started)."""
    dataset, size = loader.dataset, min(loader.batch_size, len(loader.dataset))
    order = iter(loader.sampler)
    return loader.collate_fn([dataset[next(order)] for _ in range(size)])


def dry_run(handler: NetworkHandler, loader) -> None:
    """Raises the first error a real run would hit in its first step or its schedule."""
    saved = rng_state()
    try:
        networks = {name: (copy.deepcopy(g.model), g.settings)
                    for name, g in handler.groups.items()}
        trial = NetworkHandler(handler._cfg, copy.deepcopy(handler.model), handler.task,
                               handler.steps_per_epoch, handler.device, handler.plateau_column,
                               compile_model=False,  # the real run's first step compiles once
                               networks=networks)
        loss = trial.train_step(first_batch(loader))
        if not torch.isfinite(loss):
            raise ValueError(f"the first batch's loss is {float(loss)}")
        _walk_schedule(trial)
    finally:
        set_rng_state(saved)


def _walk_schedule(trial: NetworkHandler) -> None:
    if trial.scheduler is None or trial.scheduler_interval == "plateau":
        return
    epochs = trial._cfg.training.num_epochs
    steps = epochs * trial.steps_per_epoch - 1 if trial.scheduler_interval == "batch" else epochs
    steps = min(steps, MAX_WALK)  # a schedule longer than this is checked up to here
    with warnings.catch_warnings():  # stepping without optimizer steps is the point here
        warnings.simplefilter("ignore")
        for _ in range(steps):
            trial.scheduler.step()
            rate = trial.learning_rate
            if not math.isfinite(rate) or rate < 0:
                raise ValueError(f"the schedule gives a learning rate of {rate}")
