"""Precision (bf16/fp16 autocast), channels-last memory and torch.compile on the CPU: real tiny
trainings that continue bit for bit, so CI covers the code the CUDA path runs."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import no_timing, rows, same_weights, weights
from rumpy.cli.train import main as train_main
from rumpy.config import ConfigError, load_config
from rumpy.training.setup import prepare
from rumpy.core.checkpoint import load_checkpoint

STEP_LR = 'scheduler = "step_lr"\nscheduler_params = {step_size = 1, gamma = 0.7}'


def _train(path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def _config(write_config, training: str, name: str = "cfg.toml", epochs: int = 3):
    return write_config(name=name, num_epochs=epochs, extra_params=STEP_LR,
                        extra_training=f'logging = "text"\n{training}')


@pytest.mark.parametrize("training", ['precision = "bf16"\nchannels_last = true',
                                      'precision = "fp16"', "amp = true"],
                         ids=["bf16_channels_last", "fp16", "amp"])
@pytest.mark.slow
def test_stopping_at_an_epoch_and_continuing_is_exact(write_config, tmp_path, training):
    path = _config(write_config, training)
    assert _train(path, "--experiment_name", "whole") == 0
    assert _train(path, "--experiment_name", "split", "--num_epochs", "1") == 0
    assert _train(path, "--experiment_name", "split", "--continue_from_epoch", "last") == 0
    whole, split = tmp_path / "Results" / "whole", tmp_path / "Results" / "split"
    assert no_timing(rows(whole)) == no_timing(rows(split))
    assert same_weights(weights(whole, 3), weights(split, 3))
    state = load_checkpoint(whole / "saved_models" / "epoch_3.pt")
    precision = "fp16" if "amp" in training else training.split('"')[1]
    assert state["parts"]["loop"]["precision"] == precision
    assert bool(state["parts"]["scaler"]) == (precision == "fp16")  # fp16's loss scale is kept


def test_bf16_really_changes_the_arithmetic(write_config, tmp_path):
    assert _train(_config(write_config, ""), "--experiment_name", "fp32") == 0
    assert _train(_config(write_config, 'precision = "bf16"', "bf16.toml"),
                  "--experiment_name", "bf16") == 0
    fp32, bf16 = tmp_path / "Results" / "fp32", tmp_path / "Results" / "bf16"
    assert rows(fp32)[0]["train-loss"] != rows(bf16)[0]["train-loss"]
    assert all(v.dtype == torch.float32 for v in weights(bf16, 3).values()
               if v.is_floating_point())  # the weights stay float32 (autocast, not bf16 weights)


@pytest.mark.slow
def test_channels_last_checkpoints_load_into_a_plain_model(write_config, tmp_path):
    assert _train(_config(write_config, "channels_last = true"), "--experiment_name", "nhwc") == 0
    assert _train(_config(write_config, "", "plain.toml"), "--experiment_name", "nchw") == 0
    nhwc, nchw = tmp_path / "Results" / "nhwc", tmp_path / "Results" / "nchw"
    # same numbers to rounding: only the memory layout differs
    for a, b in zip(no_timing(rows(nhwc)), no_timing(rows(nchw))):
        assert float(a["val-PSNR"]) == pytest.approx(float(b["val-PSNR"]), abs=1e-3)
    assert _train(_config(write_config, "", "plain.toml"), "--experiment_name", "nhwc",
                  "--continue_from_epoch", "2", "--new_branch") == 0  # a fork without it


def _slow(write_config, training: str):
    text = write_config(num_epochs=3, params="num_features = 16\nnum_blocks = 2",
                        extra_params=STEP_LR,
                        extra_training=f'logging = "text"\n{training}').read_text()
    return write_config(name="slow.toml", text=text.replace("crop = 12", "crop = 16\nrepeat = 60"))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_continue_is_exact_in_bf16_channels_last(write_config, tmp_path):
    import json
    import signal
    import time
    path = _slow(write_config, 'precision = "bf16"\nchannels_last = true')
    assert _train(path, "--experiment_name", "whole") == 0
    node = tmp_path / "Results" / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                             "--experiment_name", "killed"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    end = time.time() + 120
    status = node / "status.json"
    while not status.exists() or json.loads(status.read_text()).get("epochs_done") != 1:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end
        time.sleep(0.01)
    time.sleep(0.2)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _train(path, "--experiment_name", "killed", "--continue_from_epoch", "last") == 0
    whole = tmp_path / "Results" / "whole"
    assert no_timing(rows(node)) == no_timing(rows(whole))
    assert same_weights(weights(node, 3), weights(whole, 3))


def test_continuing_in_another_precision_says_so(write_config, tmp_path, caplog):
    path = _config(write_config, "")
    assert _train(path, "--num_epochs", "1") == 0
    bf16 = _config(write_config, 'precision = "bf16"', "bf16.toml")
    with caplog.at_level("INFO", logger="rumpy"):
        assert _train(bf16, "--continue_from_epoch", "last") == 0
    said = [r.getMessage() for r in caplog.records if "precision:" in r.getMessage()]
    assert said == ["precision: the checkpoint was trained in fp32, this run goes on in bf16"]
    assert len(rows(tmp_path / "Results" / "tiny")) == 3


@pytest.mark.parametrize("training, key, expected", [
    ('amp = true\nprecision = "bf16"', "training.amp", "amp = true means precision = 'fp16'"),
    ('precision = "fp8"', "training.precision", "expected one of 'fp32', 'bf16', 'fp16'"),
    ('compile = "fastest"', "training.compile", "expected true, false or a mode"),
    ("tf32 = 1", "training.tf32", "expected"),
])
def test_bad_arithmetic_settings_are_one_line_errors(write_config, tmp_path, training, key,
                                                     expected):
    path = _config(write_config, training)
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path))
    message = str(info.value)
    assert str(path) in message and key in message and expected in message
    assert "\n" not in message
    assert not (tmp_path / "Results").exists()


def test_summary_reports_the_wait_for_data(write_config, tmp_path):
    assert _train(_config(write_config, "")) == 0
    for row in rows(tmp_path / "Results" / "tiny"):
        assert 0.0 <= float(row["data-wait"]) <= float(row["epoch-time"])


@pytest.mark.slow
def test_compile_trains_or_falls_back_with_one_line(write_config, tmp_path, caplog):
    """torch.compile on the CPU (inductor needs a C++ compiler): it trains compiled, or after one
    warning eagerly; either way the checkpoint holds the plain module's names."""
    path = _config(write_config, "compile = true", epochs=2)
    with caplog.at_level("WARNING", logger="rumpy"):
        assert _train(path) == 0
    failed = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(failed) <= 1 and all("\n" not in r.getMessage() for r in failed)
    names = list(weights(tmp_path / "Results" / "tiny", 2))
    assert names and not any("_orig_mod" in n for n in names)
    plain = _config(write_config, "", "plain.toml", epochs=3)
    assert _train(plain, "--continue_from_epoch", "last") == 0  # continues without compile


def test_a_model_that_cannot_compile_trains_eagerly_after_one_warning(write_config, tmp_path,
                                                                      monkeypatch, caplog):
    """A compiler failure at the first step (simulated: the compiled callable raises, as inductor
    does without a C++ compiler): one warning, and the run equals an eager one exactly."""
    class Broken(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self._orig_mod = module

        def forward(self, *args):
            raise RuntimeError("BackendCompilerFailed: no C++ compiler\nsecond line")

    monkeypatch.setattr(torch, "compile", lambda module, mode=None: Broken(module))
    path = _config(write_config, "compile = true", epochs=2)
    with caplog.at_level("WARNING", logger="rumpy"):
        assert _train(path, "--experiment_name", "fallback") == 0
    failed = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert failed == ["torch.compile failed (RuntimeError: BackendCompilerFailed: no C++ "
                      "compiler second line); training eagerly"]
    assert _train(_config(write_config, "", "eager.toml", epochs=2),
                  "--experiment_name", "eager") == 0
    fallback, eager = tmp_path / "Results" / "fallback", tmp_path / "Results" / "eager"
    assert no_timing(rows(fallback)) == no_timing(rows(eager))
    assert same_weights(weights(fallback, 2), weights(eager, 2))
