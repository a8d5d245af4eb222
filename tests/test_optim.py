"""Optimizers and schedulers by name; each scheduler steps at its documented interval."""
from __future__ import annotations

import pytest
import torch

from rumpy.catalog import load_config
from rumpy.core.optim import OPTIMIZERS, SCHEDULERS
from rumpy.training.setup import prepare

SCHEDULER_PARAMS = {
    "none": "",
    "cosine_annealing_warm_restarts": "scheduler_params = {T_0 = 2}",
    "cosine": "",
    "multi_step_lr": "scheduler_params = {milestones = [1], gamma = 0.1}",
    "step_lr": "scheduler_params = {step_size = 1, gamma = 0.5}",
    "one_cycle_lr": "",
    "reduce_on_plateau": "scheduler_params = {patience = 0, factor = 0.5}",
}


def _handler(write_config, extra: str):
    run = prepare(load_config(write_config(extra_params=extra, num_epochs=4)))
    return run.handler, run.loaders.train


def test_every_scheduler_is_covered():
    assert set(SCHEDULERS.names()) == set(SCHEDULER_PARAMS)


@pytest.mark.parametrize("name", sorted(SCHEDULER_PARAMS))
def test_scheduler_steps_at_its_interval(write_config, name):
    handler, loader = _handler(write_config, f'scheduler = "{name}"\n{SCHEDULER_PARAMS[name]}')
    interval = SCHEDULERS.get(name).interval
    lrs = [handler.learning_rate]
    batches = list(loader)
    for epoch in range(2):
        for batch in batches:
            handler.train_step(batch)
            lrs.append(handler.learning_rate)
        handler.end_epoch()
        # the monitored column (val-PSNR) gets worse every epoch
        handler.after_validation({"epoch": epoch + 1, "val-PSNR": 30.0 - epoch})
        lrs.append(handler.learning_rate)
    steps = len(batches)
    if name == "none":
        assert len(set(lrs)) == 1
    elif interval == "plateau":
        # constant while training; halved once PSNR (higher is better) failed to improve
        assert lrs[: 2 * steps + 2] == [lrs[0]] * (2 * steps + 2)
        assert lrs[-1] == pytest.approx(lrs[0] / 2)
        assert handler.scheduler.mode == "max"
    elif interval == "epoch":
        # constant inside an epoch, changed at its end
        assert lrs[1: steps + 1] == [lrs[0]] * steps
        assert lrs[steps + 1] != lrs[0]
    else:
        assert lrs[1] != lrs[0] and handler.scheduler.last_epoch == 2 * steps
    if name == "step_lr":
        assert lrs[steps + 1] == pytest.approx(5e-4)
    if name == "cosine":  # T_max defaults to num_epochs: half way at epoch 2 of 4
        assert lrs[-1] == pytest.approx(5e-4)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizers_train(write_config, name):
    handler, loader = _handler(write_config, f'optimizer = "{name}"')
    assert type(handler.optimizer).__name__.lower() == name
    before = [p.detach().clone() for p in handler.model.parameters()]
    handler.train_step(next(iter(loader)))
    assert any(not torch.equal(a, b) for a, b in zip(before, handler.model.parameters()))


def test_grad_clip_and_optimizer_params_reach_torch(write_config):
    handler, loader = _handler(
        write_config, "grad_clip = 0.01\noptimizer_params = {betas = [0.8, 0.95], weight_decay = 0.1}")
    assert handler.optimizer.param_groups[0]["betas"] == (0.8, 0.95)
    assert handler.optimizer.param_groups[0]["weight_decay"] == 0.1
    assert handler.grad_clip == 0.01
