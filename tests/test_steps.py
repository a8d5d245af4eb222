"""Below the epoch: gradient accumulation, warmup and per-step logging (issue 19)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import no_timing, rows, stop_after, weights

from rumpy.cli.train import main as train_main
from rumpy.core.checkpoint import load_checkpoint
from rumpy.training import trainer
from rumpy.training.warmup import Warmup
from test_regression import arrays_toml


def train(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def close(a: dict, b: dict, tol: float) -> float:
    """The largest relative difference of two state dicts (asserted below `tol`)."""
    worst = max(float((a[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-12)) for k in a)
    assert worst < tol, worst
    return worst


def test_accumulating_two_half_batches_equals_the_full_batch_mlp(tmp_path, regression_data):
    """An MLP (no batch statistics): 2 x 16 accumulated gives the numbers of batches of 32,
    to float rounding (the order of the sums differs): weights, train-loss, validation."""
    path = tmp_path / "reg.toml"
    path.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=2))
    assert train(path, "--experiment_name", "full") == 0
    assert train(path, "--experiment_name", "acc", "training.accumulate_grad_batches=2",
                 "data.batch_size=16") == 0
    full, acc = tmp_path / "Results" / "full", tmp_path / "Results" / "acc"
    close(weights(acc, 2), weights(full, 2), 1e-5)
    steps = lambda node: load_checkpoint(node / "saved_models" / "epoch_2.pt")["parts"]["loop"]["step"]
    assert steps(acc) == steps(full) == 2 * 12  # 384 samples: 12 optimizer steps an epoch
    for a, f in zip(rows(acc), rows(full)):
        for column in ("train-loss", "val-loss"):
            assert float(a[column]) == pytest.approx(float(f[column]), rel=1e-5)


def test_accumulation_equals_the_full_batch_edsr_and_resumes_mid_cycle(write_config, tmp_path,
                                                                       monkeypatch):
    """EDSR (no BatchNorm): batch 2 x 2 accumulated = batch 4. A Ctrl+C in the middle of a
    cycle waits for its optimizer step; continuing from there equals the uninterrupted run
    bitwise."""
    path = write_config(num_epochs=2)
    results = tmp_path / "Results"
    assert train(path, "--experiment_name", "full") == 0
    acc = ("training.accumulate_grad_batches=2", "data.batch_size=2")
    assert train(path, "--experiment_name", "acc", *acc) == 0
    close(weights(results / "acc", 2), weights(results / "full", 2), 1e-4)
    # stop requested after the 1st micro-batch (mid-cycle): the 2nd is trained, then it saves
    monkeypatch.setattr(trainer, "StopRequest", stop_after(1))
    assert train(path, "--experiment_name", "halted", *acc) == 130
    monkeypatch.undo()
    saved = load_checkpoint(results / "halted" / "saved_models" / "interrupted.pt")
    assert saved["resume"]["position"] == 2 and saved["parts"]["loop"]["step"] == 1
    assert train(path, "--experiment_name", "halted", "--continue_from_epoch", "last", *acc) == 0
    assert no_timing(rows(results / "halted")) == no_timing(rows(results / "acc"))
    for key, value in weights(results / "acc", 2).items():
        assert torch.equal(weights(results / "halted", 2)[key], value), key


def test_an_epochs_last_cycle_averages_the_batches_it_has(tmp_path, regression_data):
    """12 batches with k = 5: cycles of 5, 5 and 2 (3 optimizer steps an epoch, which is what
    per-batch schedulers count)."""
    path = tmp_path / "reg.toml"
    path.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=1,
                                extra_params='scheduler = "one_cycle_lr"'))
    assert train(path, "training.accumulate_grad_batches=5") == 0
    state = load_checkpoint(tmp_path / "Results" / "reg" / "saved_models" / "epoch_1.pt")
    assert state["parts"]["loop"]["step"] == 3
    assert state["parts"]["scheduler"]["total_steps"] == 3


def test_warmup_factors_and_a_warm_run():
    linear, cosine = Warmup(4, "linear"), Warmup(4, "cosine")
    assert [linear.factor(s) for s in range(1, 6)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert cosine.factor(2) == pytest.approx(0.5) and cosine.factor(1) == pytest.approx(
        0.5 * (1 - math.cos(math.pi / 4)))
    assert Warmup(0).factor(1) == 1.0


def steps_rows(node: Path) -> list[dict]:
    from rumpy.training.step_log import read_steps
    return read_steps(node / "result_outputs" / "steps.csv")


def no_step_timing(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("step-time", "data-wait")} for r in rs]


def test_steps_csv_rows_trackers_fork_and_accumulation(tmp_path, regression_data):
    """log_every_n_steps = 1: a row per optimizer step whose losses average to the epoch's
    train-loss; TensorBoard gets them with the step as x axis; a fork starts with its parent's
    rows up to the fork (marked inherited); with accumulation the rows count optimizer steps;
    warmup shows in the rates."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    path = tmp_path / "reg.toml"
    path.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=2,
                                extra_training='trackers = ["tensorboard"]\nlog_grad = true\n'
                                               'log_every_n_steps = 1\nwarmup_steps = 4'))
    assert train(path) == 0
    node = tmp_path / "Results" / "reg"
    steps = steps_rows(node)
    assert [int(r["step"]) for r in steps] == list(range(1, 25))
    assert [int(r["batch"]) for r in steps[:12]] == list(range(1, 13))
    summary = rows(node)
    for epoch in (1, 2):
        losses = [float(r["train-loss"]) for r in steps if r["epoch"] == str(epoch)]
        assert sum(losses) / 12 == pytest.approx(float(summary[epoch - 1]["train-loss"]), rel=1e-9)
        norms = [float(r["grad-norm"]) for r in steps if r["epoch"] == str(epoch)]
        assert max(norms) == pytest.approx(float(summary[epoch - 1]["grad-norm-max"]), rel=1e-9)
    rates = [float(r["learning-rate"]) for r in steps[:5]]
    assert rates == pytest.approx([3e-3 * f for f in (0.25, 0.5, 0.75, 1.0, 1.0)])
    assert float(summary[0]["learning-rate"]) == pytest.approx(3e-3 * 0.25)  # epoch 1's first step
    events = EventAccumulator(str(node / "tensorboard" / "steps"))
    events.Reload()
    scalars = events.Scalars("steps/train-loss")
    assert [s.step for s in scalars] == list(range(1, 25))
    assert [s.value for s in scalars] == pytest.approx([float(r["train-loss"]) for r in steps])
    # a continue purges neither the step curves nor the epoch ones; the fork below replays its
    # inherited step rows into its own event files
    assert train(path, "--continue_from_epoch", "last", "--num_epochs", "3") == 0
    events = EventAccumulator(str(node / "tensorboard" / "steps"))
    events.Reload()
    assert [s.step for s in events.Scalars("steps/train-loss")] == list(range(1, 37))

    # a fork at epoch 1 with accumulation: the parent's 12 rows, then a row every 2 steps
    assert train(path, "--continue_from_epoch", "1", "--new_branch", "--new_branch_name", "acc",
                 "training.accumulate_grad_batches=2", "training.log_every_n_steps=2") == 0
    fork = steps_rows(node / "acc")
    events = EventAccumulator(str(node / "acc" / "tensorboard" / "steps"))
    events.Reload()
    assert [s.step for s in events.Scalars("steps/train-loss")] == [*range(1, 13), 14, 16, 18]
    assert [r["inherited"] for r in fork] == ["1"] * 12 + ["0"] * 3
    assert no_step_timing(fork[:12]) == [{**r, "inherited": "1"} for r in no_step_timing(steps[:12])]
    assert [int(r["step"]) for r in fork[12:]] == [14, 16, 18]  # 6 optimizer steps in epoch 2
    assert [int(r["batch"]) for r in fork[12:]] == [4, 8, 12]
    assert steps_rows(node)[:24] == steps  # the parent's own rows are untouched


@pytest.mark.slow
def test_killed_mid_epoch_continue_equals_the_uninterrupted_run(write_config, tmp_path):
    """kill -9 in the middle of epoch 2 (after steps.csv got rows of it): the continue from
    epoch 1 cuts those rows and trains them again; summary, steps.csv (but for its times) and
    weights equal an uninterrupted run's bitwise."""
    import os
    import signal
    import subprocess
    import sys
    import time
    text = write_config(num_epochs=2, extra_training='logging = "text"\nlog_every_n_steps = 1'
                        ).read_text().replace("crop = 12", "crop = 12\nrepeat = 30")
    path = write_config(name="long.toml", text=text)
    results = tmp_path / "Results"
    assert train(path, "--experiment_name", "whole") == 0
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                             "--experiment_name", "killed"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    node, end = results / "killed", time.time() + 180
    while not any(r["epoch"] == "2" for r in steps_rows(node)):  # the file is the event
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (node / "saved_models" / "epoch_2.pt").exists()
    assert len(steps_rows(node)) > 60  # rows past the checkpoint of epoch 1 (60 steps)
    assert train(path, "--experiment_name", "killed", "--continue_from_epoch", "last") == 0
    assert no_timing(rows(node)) == no_timing(rows(results / "whole"))
    assert no_step_timing(steps_rows(node)) == no_step_timing(steps_rows(results / "whole"))
    for key, value in weights(results / "whole", 2).items():
        assert torch.equal(weights(node, 2)[key], value), key


def test_ddp_all_reduces_once_per_accumulated_step(write_config, tmp_path):
    """Under DDP the first k-1 micro-batches of a cycle run without the all-reduce (no_sync):
    a comm hook counts the reductions of a real (one-process, gloo) DistributedDataParallel."""
    import torch.distributed as torch_dist
    from rumpy.catalog import load_config
    from rumpy.training.dry_run import first_batch
    from rumpy.training.setup import prepare
    path = write_config(extra_training="accumulate_grad_batches = 3")
    run = prepare(load_config(path))
    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}",
                                  rank=0, world_size=1)
    try:
        handler = run.handler
        handler.train_model = torch.nn.parallel.DistributedDataParallel(handler.model)
        reductions = []

        def count(state, bucket):
            reductions.append(handler._micro)
            future = torch.futures.Future()
            future.set_result(bucket.buffer())
            return future
        handler.train_model.register_comm_hook(None, count)
        batch = first_batch(run.loaders.train)
        for remaining in (5, 4, 3, 2, 1):  # cycles of 3 and 2
            handler.train_step(batch, remaining=remaining)
        assert handler.step == 2 and not handler.accumulating
        # one all-reduce per optimizer step, in the backward of the cycle's last micro-batch
        # (the 3rd of 3, then the 2nd of 2)
        assert reductions == [3, 2]
    finally:
        torch_dist.destroy_process_group()


def test_scheduler_interval_counts_steps_or_epochs(tmp_path, regression_data):
    """`interval = "step"` makes any epoch scheduler count optimizer steps (its milestones
    too); a bad interval is a one-line error at its key."""
    from rumpy.catalog import load_config
    from rumpy.config import ConfigError
    from rumpy.training.setup import prepare
    path = tmp_path / "reg.toml"
    path.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=2,
                                extra_params='scheduler = "multi_step_lr"\nscheduler_params = '
                                             '{milestones = [6, 18], gamma = 0.1, '
                                             'interval = "step"}',
                                extra_training="log_every_n_steps = 1"))
    assert train(path) == 0
    rates = [float(r["learning-rate"]) for r in steps_rows(tmp_path / "Results" / "reg")]
    assert rates == pytest.approx([3e-3] * 6 + [3e-4] * 12 + [3e-5] * 6)
    path.write_text(path.read_text().replace('interval = "step"', 'interval = "hour"'))
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path))
    assert "scheduler_params.interval" in str(info.value) and "'step'" in str(info.value)


def test_step_rows_every_n_and_at_epoch_ends_survive_a_ctrl_c(tmp_path, regression_data,
                                                             monkeypatch):
    """N = 5 with 12 steps an epoch: rows at the multiples of 5 and at each epoch's end (5, 10,
    12, 15, 20, 24). A Ctrl+C
    in the middle of a row's window keeps the window (and the epoch's gradient statistics) in
    the checkpoint: the continue writes the rows and summary an uninterrupted run writes."""
    extra = "log_every_n_steps = 5\nlog_grad = true"
    path = tmp_path / "reg.toml"
    path.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=2,
                                extra_training=extra))
    assert train(path, "--experiment_name", "whole") == 0
    whole = tmp_path / "Results" / "whole"
    assert [int(r["step"]) for r in steps_rows(whole)] == [5, 10, 12, 15, 20, 24]
    assert [int(r["batch"]) for r in steps_rows(whole)] == [5, 10, 12, 3, 8, 12]
    monkeypatch.setattr(trainer, "StopRequest", stop_after(17))  # in the window of step 20
    assert train(path, "--experiment_name", "halted") == 130
    monkeypatch.undo()
    assert train(path, "--experiment_name", "halted", "--continue_from_epoch", "last") == 0
    halted = tmp_path / "Results" / "halted"
    assert no_step_timing(steps_rows(halted)) == no_step_timing(steps_rows(whole))
    assert no_timing(rows(halted)) == no_timing(rows(whole))


def test_a_branch_changing_the_steps_an_epoch_takes_rebuilds_its_schedule(tmp_path,
                                                                        regression_data):
    """one_cycle_lr is sized by the optimizer steps of the run: a branch with another
    accumulation (or limit_train_batches) rebuilds it for its own count instead of stepping
    the parent's past its end; `interval = "epoch"` sizes it in epochs."""
    path = tmp_path / "reg.toml"
    path.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=2,
                                extra_params='scheduler = "one_cycle_lr"',
                                extra_training="accumulate_grad_batches = 4"))
    assert train(path) == 0
    node = tmp_path / "Results" / "reg"
    assert train(path, "--continue_from_epoch", "1", "--new_branch", "--new_branch_name", "k1",
                 "training.accumulate_grad_batches=1") == 0
    state = load_checkpoint(node / "k1" / "saved_models" / "epoch_2.pt")
    assert state["parts"]["scheduler"]["total_steps"] == 24 and state["parts"]["loop"]["step"] == 3 + 12
    path.write_text(path.read_text().replace('scheduler = "one_cycle_lr"',
                                             'scheduler = "one_cycle_lr"\n'
                                             'scheduler_params = {interval = "epoch"}'))
    assert train(path, "--experiment_name", "per_epoch") == 0
    state = load_checkpoint(tmp_path / "Results" / "per_epoch" / "saved_models" / "epoch_2.pt")
    assert state["parts"]["scheduler"]["total_steps"] == 2
