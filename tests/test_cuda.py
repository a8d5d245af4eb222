"""The CUDA path, on a real GPU (marked `cuda`: skipped without one; benchmarks/gpu_check.sh
runs them). Tiny real trainings, as the CPU tests, with gpu = "single"."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import no_timing, rows, same_weights, weights
from rumpy.cli.train import main as train_main
from rumpy.config import load_config
from rumpy.training.background import snapshot
from rumpy.core.checkpoint import load_checkpoint
from rumpy.training.prefetch import Prefetcher
from rumpy.training.setup import prepare

pytestmark = pytest.mark.cuda

STEP_LR = 'scheduler = "step_lr"\nscheduler_params = {step_size = 1, gamma = 0.7}'


@pytest.fixture(autouse=True)
def deterministic_cublas(monkeypatch):
    # cuBLAS is deterministic only with a fixed workspace (read when its handle is made)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _gpu(write_config, training: str = "", name: str = "cfg.toml", epochs: int = 3,
         slow: bool = False):
    kw = dict(params="num_features = 16\nnum_blocks = 2") if slow else {}
    text = write_config(name=name, num_epochs=epochs, extra_params=STEP_LR,
                        extra_training=f'logging = "text"\ndeterministic = true\n{training}',
                        **kw).read_text()
    text = text.replace('gpu = "off"', 'gpu = "single"')
    if slow:
        text = text.replace("crop = 12", "crop = 16\nrepeat = 200")
    return write_config(name=name, text=text)


def _train(path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


@pytest.mark.parametrize("training", ["", 'precision = "bf16"\nchannels_last = true',
                                      'precision = "fp16"'], ids=["fp32", "bf16_nhwc", "fp16"])
def test_gpu_single_trains_and_continues_bitwise(write_config, tmp_path, training):
    path = _gpu(write_config, training)
    assert _train(path, "--experiment_name", "whole") == 0
    assert _train(path, "--experiment_name", "split", "--num_epochs", "1") == 0
    assert _train(path, "--experiment_name", "split", "--continue_from_epoch", "last") == 0
    whole, split = tmp_path / "Results" / "whole", tmp_path / "Results" / "split"
    assert no_timing(rows(whole)) == no_timing(rows(split))
    assert same_weights(weights(whole, 3), weights(split, 3))
    assert "on cuda:0" in (whole / "train.log").read_text()
    state = load_checkpoint(whole / "saved_models" / "last.pt")  # written in the background
    assert state["epoch"] == 3 and all(v.device.type == "cpu" for v in state["parts"]["model"].values())


def test_fp16_accumulation_and_step_log_on_the_gpu(write_config, tmp_path):
    """fp16 with 2 accumulated micro-batches: one unscale and one scaler step per optimizer
    step; split at an epoch and continued it equals the whole run bitwise; steps.csv gets a row
    per optimizer step."""
    from rumpy.training.step_log import read_steps
    acc = ('precision = "fp16"\naccumulate_grad_batches = 2\nlog_every_n_steps = 1\n'
           'log_grad = true')
    path = _gpu(write_config, acc)
    text = path.read_text().replace("batch_size = 4", "batch_size = 2")
    path.write_text(text)
    assert _train(path, "--experiment_name", "whole") == 0
    assert _train(path, "--experiment_name", "split", "--num_epochs", "1") == 0
    assert _train(path, "--experiment_name", "split", "--continue_from_epoch", "last") == 0
    whole, split = tmp_path / "Results" / "whole", tmp_path / "Results" / "split"
    assert no_timing(rows(whole)) == no_timing(rows(split))
    assert same_weights(weights(whole, 3), weights(split, 3))
    steps = read_steps(whole / "result_outputs" / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, 7))  # 8 tiles / 4 a step, 3 epochs
    assert all(float(r["grad-norm"]) > 0 for r in steps)


def test_ctrl_c_on_the_gpu_saves_and_continues_exactly(write_config, tmp_path):
    path = _gpu(write_config, 'precision = "bf16"', slow=True)
    assert _train(path, "--experiment_name", "whole") == 0
    node = tmp_path / "Results" / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                             "--experiment_name", "stopped"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    status, end = node / "status.json", time.time() + 180
    while not status.exists() or json.loads(status.read_text()).get("epochs_done") != 1:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end
        time.sleep(0.01)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal (a very fast GPU)")
    assert proc.returncode == 130, output
    assert _train(path, "--experiment_name", "stopped", "--continue_from_epoch", "last") == 0
    whole = tmp_path / "Results" / "whole"
    assert no_timing(rows(node)) == no_timing(rows(whole))
    assert same_weights(weights(node, 3), weights(whole, 3))


def test_validation_on_the_device_equals_the_cpu_one(write_config, tmp_path):
    cpu_path = write_config(name="cpu.toml", num_epochs=1, extra_training='logging = "text"')
    assert _train(cpu_path) == 0
    run = tmp_path / "Results" / "tiny"
    state = load_checkpoint(run / "saved_models" / "epoch_1.pt")
    cpu_row = rows(run)[0]
    cfg = load_config(_gpu(write_config, epochs=1, name="gpu.toml"),
                      {"experiment_name": "on_gpu"})
    gpu = prepare(cfg)
    assert gpu.device.type == "cuda"
    gpu.handler.model.load_state_dict(state["parts"]["model"])
    result = gpu.task.evaluate(gpu.handler)
    for metric, tol in (("PSNR", 1e-3), ("SSIM", 1e-4), ("loss", 1e-5)):
        assert result.means["chelsea"][metric] == pytest.approx(float(cpu_row[f"val-{metric}"]),
                                                                abs=tol)


def test_prefetcher_delivers_every_batch_intact_on_the_device():
    batches = [{"lr": torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8).pin_memory(),
                "index": torch.arange(4) + 4 * i} for i in range(6)]
    device = torch.device("cuda:0")
    seen = []
    for batch in Prefetcher(batches, device, channels_last=True):
        assert batch["lr"].device == device and batch["lr"].dtype == torch.uint8
        assert batch["lr"].is_contiguous(memory_format=torch.channels_last)
        seen.append({k: v.float().mul(2).cpu() for k, v in batch.items()})  # work on the stream
    assert len(seen) == 6
    for got, want in zip(seen, batches):
        assert torch.equal(got["lr"], want["lr"].float() * 2)
        assert torch.equal(got["index"], want["index"].float() * 2)


def test_checkpoint_snapshot_is_taken_before_training_changes_the_weights():
    w = torch.randn(1000, 1000, device="cuda")
    state = {"parts": {"model": {"w": w}}, "rng": torch.get_rng_state()}
    copy = snapshot(state)
    expected = w.cpu()
    w.mul_(3)  # the next step, queued right after the copy
    assert copy["parts"]["model"]["w"].device.type == "cpu"
    assert torch.equal(copy["parts"]["model"]["w"], expected)
