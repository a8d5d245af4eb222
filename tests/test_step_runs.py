"""Step-based runs (issue 19): `num_iterations` steps validated every `eval_every_n_steps`, each
validation period one of the node's epochs, the training data streaming across data passes. Real
training on tiny photo tiles: the stream is the epoch run's data, a period may end mid-pass, and
Ctrl+C, kill -9, continue and fork there give the uninterrupted run's numbers bitwise."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import no_timing, rows, stop_after, weights

from rumpy.cli.train import main as train_main
from rumpy.config import ConfigError, load_config
from rumpy.data.loaders import EpochSampler
from rumpy.training import trainer
from rumpy.training.setup import check_semantics
from test_steps import no_step_timing, steps_rows


def step_config(write_config, iterations: int, every: int, extra: str = "",
                name: str = "steps.toml", repeat: int = 1) -> Path:
    """The tiny SR config (8 training tiles, batch 4: 2 steps a data pass with repeat = 1) as
    a step-based run."""
    text = write_config(extra_training=f'logging = "text"\nnum_iterations = {iterations}\n'
                                       f'eval_every_n_steps = {every}\n{extra}').read_text()
    text = text.replace("num_epochs = 2\n", "").replace("crop = 12", f"crop = 12\nrepeat = {repeat}")
    return write_config(name=name, text=text)


def train(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def test_the_stream_is_the_epoch_runs_data_and_periods_count_steps(write_config, tmp_path):
    """4 steps validated every step train exactly the batches of 2 epochs (2 steps a pass):
    the weights at step 4 equal the epoch run's at epoch 2 bitwise; rows carry step and
    data-epoch; checkpoints and outputs follow their step periods; the tree speaks in steps;
    a fork at step 2 (a pass's end) and at step 3 (mid-pass) replays the stream."""
    results = tmp_path / "Results"
    epochs = write_config(name="epochs.toml", extra_training='logging = "text"')
    assert train(epochs, "--experiment_name", "by_epoch") == 0
    path = step_config(write_config, 4, 1, "save_checkpoint_every_n_steps = 2\n"
                                           "write_output_every_n_steps = 2\nkeep_last_n = 0\n"
                                           "keep_every_n_epochs = 1")
    assert train(path) == 0
    node = results / "tiny"
    summary = rows(node)
    assert [(r["epoch"], r["step"], r["data-epoch"]) for r in summary] == \
        [("1", "1", "0.5"), ("2", "2", "1.0"), ("3", "3", "1.5"), ("4", "4", "2.0")]
    assert all(r["val-PSNR"] for r in summary)  # a validation every period
    for key, value in weights(results / "by_epoch", 2).items():
        assert torch.equal(weights(node, 4)[key], value), key
    by_epoch = rows(results / "by_epoch")
    for step, epoch in ((2, 1), (4, 2)):  # validated on the same weights: the same scores
        assert summary[step - 1]["val-PSNR"] == by_epoch[epoch - 1]["val-PSNR"]
    saved = sorted(p.name for p in (node / "saved_models").glob("epoch_*.pt"))
    assert saved == ["epoch_2.pt", "epoch_4.pt"]  # every 2 steps (the last always)
    samples = sorted(p.name for p in (node / "result_outputs").glob("epoch_*_samples"))
    assert samples == ["epoch_2_samples", "epoch_4_samples"]

    from rumpy.cli.main import main as rumpy_main
    assert train(path, "--continue_from_step", "2", "--new_branch", "--new_branch_name",
                 "at2") == 0
    assert no_timing(rows(node / "at2")) == no_timing(
        [{**r, "inherited": "1" if int(r["epoch"]) <= 2 else "0"} for r in summary])
    # 2 -> 3 is inside the second data pass: its checkpoint is mid-pass
    assert train(path, "--continue_from_step", "2", "--num_iterations", "3",
                 "--overwrite_data") == 0
    assert no_timing(rows(node)) == no_timing(summary[:3])
    assert train(path, "--continue_from_step", "3", "--new_branch", "--new_branch_name",
                 "at3", "--num_iterations", "4") == 0
    assert no_timing(rows(node / "at3"))[3] == {**no_timing(summary)[3], "inherited": "0"}
    import io
    from contextlib import redirect_stdout
    out = io.StringIO()
    with redirect_stdout(out):
        assert rumpy_main(["tree", str(node)]) == 0
    text = out.getvalue()
    assert "steps 1-3 (validations 1-3)" in text and "fork @ step 2" in text, text
    assert "at3  [finished]  fork @ step 3  steps 4-4" in text, text
    import pandas as pd
    assert rumpy_main(["export", str(node), "--format", "long", "-o",
                       str(tmp_path / "long.csv")]) == 0
    long = pd.read_csv(tmp_path / "long.csv")
    assert {"step", "data-epoch"} <= set(long.columns)  # where a value is, not a metric
    assert not set(long["metric"]) & {"step", "data-epoch"}


def test_the_period_and_unit_are_kept_and_bad_step_keys_are_one_line(write_config, tmp_path,
                                                                      caplog):
    path = step_config(write_config, 4, 2)

    def refused(text: str, key: str, needle: str) -> None:
        bad = write_config(name="bad.toml", text=text)
        with pytest.raises(ConfigError) as info:
            check_semantics(load_config(bad))  # what training checks before writing
        assert info.value.key_path == key and needle in str(info.value), str(info.value)

    base = path.read_text()
    refused(base.replace("num_iterations = 4", "num_iterations = 4\nnum_epochs = 3"),
            "training.num_epochs", "give one of the two")
    refused(base.replace("eval_every_n_steps = 2\n", ""), "training.eval_every_n_steps",
            "missing")
    refused(base.replace("eval_every_n_steps = 2", "eval_every_n_steps = 3"),
            "training.eval_every_n_steps", "divisor of num_iterations (4)")
    refused(base.replace("eval_every_n_steps = 2", "eval_every_n_steps = 2\n"
                         "save_checkpoint_every_n_steps = 3"),
            "training.save_checkpoint_every_n_steps", "multiple of eval_every_n_steps (2)")
    refused(base.replace("num_iterations = 4\n", ""), "training.eval_every_n_steps",
            "only with training.num_iterations")
    refused(base.replace("eval_every_n_steps = 2", "eval_every_n_steps = 2\neval_frequency = 2"),
            "training.eval_frequency", "sets it from eval_every_n_steps")
    refused(base.replace('[model.internal_params]',
                         '[model.internal_params]\nscheduler = "step_lr"\n'
                         'scheduler_params = { step_size = 2, interval = "epoch" }'),
            "model.internal_params.scheduler_params.interval", "expected 'step'")
    for name in ("None", "Reduce_On_Plateau"):  # names in any case; neither has an interval
        text = base.replace("[model.internal_params]",
                            f'[model.internal_params]\nscheduler = "{name}"')
        cfg = load_config(write_config(name="case.toml", text=text))
        check_semantics(cfg)
        assert "interval" not in cfg.model.internal_params.scheduler_params

    def one_line(*flags: str, needle: str) -> None:
        caplog.clear()
        assert train(path, *flags) != 0
        err = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(err) == 1 and "\n" not in err[0] and needle in err[0], err

    assert train(path) == 0
    one_line("--continue_from_step", "3", needle="a multiple of eval_every_n_steps = 2")
    one_line("--continue_from_step", "4", "--new_branch", "training.eval_every_n_steps=4",
             "--num_iterations", "8", needle="validates every 2 steps")
    one_line("--continue_from_epoch", "last", "training.num_iterations=0",
             "training.eval_every_n_steps=0", "--num_epochs", "5",
             needle="counts its epochs in validation periods")
    one_line("--continue_from_step", "4", needle="4 steps are already done")
    one_line("--continue_from_step", "2", "--new_branch", "data.batch_size=2",
             needle="ended 1 data passes in; with this batch size")
    epochs = write_config(name="epochs.toml", extra_training='logging = "text"',
                          experiment="by_epoch")
    assert train(epochs) == 0
    one_line("--experiment_name", "by_epoch", "--continue_from_epoch", "last",
             "--num_iterations", "8", needle="counts its epochs in data passes")


def test_a_ctrl_c_mid_period_continues_exactly(write_config, tmp_path, monkeypatch):
    """Half an epoch a period (30 of a pass's 60 steps), a steps.csv row each step: two
    validation rows per data pass; a Ctrl+C inside the third period (mid-pass) and a continue
    give the uninterrupted run's rows, step rows and weights bitwise."""
    results = tmp_path / "Results"
    path = step_config(write_config, 120, 30, "log_every_n_steps = 1", repeat=30)
    assert train(path, "--experiment_name", "whole") == 0
    whole = rows(results / "whole")
    assert [r["data-epoch"] for r in whole] == ["0.5", "1.0", "1.5", "2.0"]
    assert [int(r["step"]) for r in steps_rows(results / "whole")] == list(range(1, 121))
    monkeypatch.setattr(trainer, "StopRequest", stop_after(75))
    assert train(path, "--experiment_name", "cut") == 130  # stopped, and saved
    assert [r["epoch"] for r in rows(results / "cut")] == ["1", "2"]
    monkeypatch.undo()
    assert train(path, "--experiment_name", "cut", "--continue_from_epoch", "last") == 0
    assert no_timing(rows(results / "cut")) == no_timing(whole)
    assert no_step_timing(steps_rows(results / "cut")) == \
        no_step_timing(steps_rows(results / "whole"))
    for key, value in weights(results / "whole", 4).items():
        assert torch.equal(weights(results / "cut", 4)[key], value), key


@pytest.mark.slow
def test_killed_mid_period_continue_equals_the_uninterrupted_run(write_config, tmp_path):
    """The issue's check: num_iterations, a validation every half pass, a steps.csv row every
    step; kill -9 in the middle of the second period (the checkpoint of step 30 is mid-pass),
    continue: summary, steps.csv but for its times, and weights equal an uninterrupted run's."""
    results = tmp_path / "Results"
    path = step_config(write_config, 120, 30, "log_every_n_steps = 1", repeat=30)
    assert train(path, "--experiment_name", "whole") == 0
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                             "--experiment_name", "killed"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    node, end = results / "killed", time.monotonic() + 300
    while not any(r["epoch"] == "2" for r in steps_rows(node)):  # the file is the event
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < end
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (node / "saved_models" / "epoch_2.pt").exists()
    assert train(path, "--experiment_name", "killed", "--continue_from_step", "30") == 0
    assert no_timing(rows(node)) == no_timing(rows(results / "whole"))
    assert no_step_timing(steps_rows(node)) == no_step_timing(steps_rows(results / "whole"))
    for key, value in weights(results / "whole", 4).items():
        assert torch.equal(weights(node, 4)[key], value), key


def test_data_parallel_ranks_split_each_global_batch_of_the_stream():
    """Under DDP each rank draws its slice of every global batch of the stream, so 2 processes
    see exactly the one-process batches, periods ending mid-pass included."""
    def batches(world: int, rank: int, epoch: int, start: int = 0) -> list:
        sampler = EpochSampler(10, seed=5)
        sampler.shard(rank, world, 4)
        sampler.stream(3, 4)  # 3 global batches a period; a pass is 2 (10 // 4)
        sampler.set_epoch(epoch, start=start)
        keys = list(sampler)
        assert len(keys) == len(sampler)
        return [keys[i:i + 4 // world] for i in range(0, len(keys), 4 // world)]

    one = batches(1, 0, 2)
    assert [{e for e, _ in b} for b in one] == [{2}, {3}, {3}]  # the second period: passes 2-3
    two = [a + b for a, b in zip(batches(2, 0, 2), batches(2, 1, 2))]
    assert two == one
    assert batches(1, 0, 2, start=4) == one[1:]  # resumed after one global batch
    with pytest.raises(ValueError):
        EpochSampler(3, seed=5).stream(3, 4)


def test_a_step_counts_accumulated_batches(write_config, tmp_path):
    """With accumulate_grad_batches = 2 a period of 1 step is 2 batches of the stream: 2 steps
    train the 2 epochs of the epoch run with the same accumulation, bitwise."""
    results = tmp_path / "Results"
    accumulate = "accumulate_grad_batches = 2"
    epochs = write_config(name="epochs.toml", extra_training=f'logging = "text"\n{accumulate}')
    assert train(epochs, "--experiment_name", "by_epoch") == 0
    assert train(step_config(write_config, 2, 1, accumulate)) == 0
    assert [r["data-epoch"] for r in rows(results / "tiny")] == ["1.0", "2.0"]
    for key, value in weights(results / "by_epoch", 2).items():
        assert torch.equal(weights(results / "tiny", 2)[key], value), key


def test_a_gans_discriminator_schedule_counts_steps_too(write_config, tmp_path):
    """Both networks' schedulers step per optimizer step in a step-based run: with step_size 2
    (and 2 steps a validation) the generator's and the discriminator's rates halve after the
    same step (the discriminator's counted validations before)."""
    from test_gan import DISC, RRDB
    text = step_config(write_config, 4, 2).read_text()
    text = text.replace('name = "edsr"', 'name = "rrdbnet"').replace(
        "num_features = 8\nnum_blocks = 1", RRDB).replace(
        "[model.internal_params]", '[model.internal_params]\nscheduler = "step_lr"\n'
                                   'scheduler_params = {step_size = 2, gamma = 0.5}')
    path = write_config(name="gan.toml", text=text + DISC.replace("step_size = 1, gamma = 0.8",
                                                                  "step_size = 2, gamma = 0.5"))
    assert train(path) == 0
    summary = rows(tmp_path / "Results" / "tiny")
    rates = [(float(r["learning-rate"]), float(r["learning-rate-discriminator"])) for r in summary]
    assert rates == [(1e-3, 1e-3), (5e-4, 5e-4)], rates  # the period's first step's rates


def test_trackers_draw_validations_at_their_step(write_config, tmp_path):
    """TensorBoard's validation curves and sample images of a step-based run are on the
    optimizer-step axis of its steps.csv curves, and a continue adds the new ones once each."""
    from test_tracker_catch_up import _events
    path = step_config(write_config, 4, 2, 'trackers = ["tensorboard"]\nlog_every_n_steps = 1')
    assert train(path) == 0
    assert train(path, "--continue_from_epoch", "last", "--num_iterations", "8") == 0
    node = tmp_path / "Results" / "tiny"
    counts = _events(node / "tensorboard")
    psnr = sorted(step for (tag, step), n in counts.items() if tag == "val/chelsea/PSNR"
                  for _ in range(n))
    assert psnr == [2, 4, 6, 8]
    # the sample images too: at the validations' steps, not at their period's index
    images = {step for (tag, step) in counts if tag.startswith("samples/")}
    assert images and images <= {2, 4, 6, 8}, images
    steps = _events(node / "tensorboard" / "steps")
    assert sorted(s for (tag, s) in steps if tag == "steps/train-loss") == list(range(1, 9))


def test_the_report_draws_a_step_based_tree_in_steps(write_config, tmp_path):
    """`rumpy report` of a step-based tree: rows, spans, the fork and the best validation at
    their optimizer step, and step / data-epoch are positions, not metric curves."""
    from rumpy.report.collect import collect

    path = step_config(write_config, 4, 2)
    assert train(path) == 0
    assert train(path, "--continue_from_step", "2", "--new_branch", "--num_iterations", "6") == 0
    assert (tmp_path / "Results" / "tiny" / "branch_step_2").is_dir()  # named in steps too
    report = collect(tmp_path / "Results", samples=False)
    assert report["unit"] == "step"
    root, branch = report["nodes"]
    assert root["unit"] == branch["unit"] == "step"
    assert [r[0] for r in root["rows"]] == [2, 4] and root["epochs"] == [2, 4]
    assert branch["fork_epoch"] == 2 and branch["epochs"] == [4, 6]
    assert [(r[0], r[1]) for r in branch["rows"]] == [(2, 1), (4, 0), (6, 0)]
    assert branch["best"]["epoch"] in (4, 6)
    assert not {"step", "data-epoch"} & set(root["columns"] + branch["columns"])
