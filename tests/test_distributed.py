"""Data-parallel training with torchrun on CPU processes (gloo): two processes give the
one-process run at the same global batch, only rank 0 writes, a killed job continues exactly, a
SIGTERM saves once and every rank exits, and a batch that does not split is a one-line error."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import no_timing, rows
from rumpy.cli.train import main as train_main
from rumpy.core.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not built in")


def torchrun(path: Path, *flags: str, wait: bool = True, procs: int = 2):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={procs}", "-m", "rumpy.cli.train", "--parameters", str(path),
               *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def model_of(node: Path, name: str) -> dict:
    return load_checkpoint(node / "saved_models" / name)["parts"]["model"]


def config(write_config, name: str, epochs: int = 3, repeat: int = 2) -> Path:
    path = write_config(f"{name}.toml", experiment=name, num_epochs=epochs,
                        extra_training='logging = "text"\nkeep_every_n_epochs = 1')
    path.write_text(path.read_text().replace("crop = 12\n", f"crop = 12\nrepeat = {repeat}\n"))
    return path


def close(a: list[dict], b: list[dict], rel: float = 1e-5) -> bool:
    for x, y in zip(no_timing(a), no_timing(b), strict=True):
        for key in x:
            if key in ("epoch", "step", "data-epoch", "inherited"):
                assert x[key] == y[key]
            elif x[key] != y[key]:
                assert float(x[key]) == pytest.approx(float(y[key]), rel=rel), key
    return True


def test_two_processes_equal_one_at_the_same_global_batch(write_config, tmp_path):
    one = config(write_config, "one")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank (OMP_NUM_THREADS=1): the same kernels
    try:
        assert train_main(["--parameters", str(one)]) == 0
    finally:
        torch.set_num_threads(threads)
    two = config(write_config, "two")
    proc = torchrun(two)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = tmp_path / "Results" / "one", tmp_path / "Results" / "two"
    assert close(rows(a), rows(b))  # all-reduce order: equal to float rounding
    wa, wb = model_of(a, "epoch_3.pt"), model_of(b, "epoch_3.pt")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # only rank 0 wrote: the same files as the one-process run, one log line per epoch
    assert sorted(p.name for p in b.rglob("*")) == sorted(p.name for p in a.rglob("*"))
    log = (b / "train.log").read_text()
    assert log.count("epoch 3/3:") == 1 and "x 2 processes" in log
    assert len(load_checkpoint(b / "saved_models" / "epoch_3.pt")["rng_ranks"]) == 2


def test_accumulating_two_processes_equal_one_process_with_the_whole_batch(write_config,
                                                                          tmp_path):
    """2 processes x 2 samples, 2 micro-batches per step (the first without all-reduce) =
    one process with batches of 8."""
    big = config(write_config, "big", epochs=2)
    big.write_text(big.read_text().replace("batch_size = 4", "batch_size = 8"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(["--parameters", str(big)]) == 0
    finally:
        torch.set_num_threads(threads)
    acc = config(write_config, "acc", epochs=2)
    proc = torchrun(acc, "training.accumulate_grad_batches=2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = tmp_path / "Results" / "big", tmp_path / "Results" / "acc"
    assert close(rows(a), rows(b))
    wa, wb = model_of(a, "epoch_2.pt"), model_of(b, "epoch_2.pt")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert load_checkpoint(b / "saved_models" / "epoch_2.pt")["parts"]["loop"]["step"] == 4


@pytest.mark.parametrize("edit, message", [
    (("batch_size = 4", "batch_size = 3"), "data.batch_size: expected a multiple of the 2 "
                                           "processes"),
    (('logging = "text"', 'logging = "text"\nsync_bn = true'),
     "training.sync_bn: SyncBatchNorm runs on CUDA GPUs only"),
])
def test_a_batch_that_does_not_split_is_a_one_line_error(write_config, tmp_path, edit, message):
    path = config(write_config, "odd", epochs=1)
    path.write_text(path.read_text().replace(*edit))
    proc = torchrun(path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    # torchrun itself reports a failed worker with its own traceback; none comes from rumpy
    # (the package's own folder: a clone may itself be called rumpy/, with torch inside it)
    package = str(Path(__file__).resolve().parents[1] / "rumpy") + os.sep
    assert package not in "".join(line for line in (proc.stdout + proc.stderr).splitlines(True)
                                  if line.lstrip().startswith("File "))
    assert not (tmp_path / "Results" / "odd").exists()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_job(proc, sig) -> None:
    """What a cluster does to a job: the signal to every process of it (torchrun starts its
    workers in sessions of their own, so the launcher's process group is not enough)."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_for(predicate, proc, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the job ended first:\n{proc.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_step_based_run_in_two_processes_equals_one_and_continues_mid_pass(write_config,
                                                                             tmp_path):
    """num_iterations 6 validated every 3 steps (a pass is 4 steps: the first period ends
    mid-pass): 2 processes, stopped at step 3 and continued, equal one uninterrupted process
    (to float rounding) and two uninterrupted processes (bitwise)."""
    def steps(name: str, iterations: int) -> Path:
        path = config(write_config, name)
        text = path.read_text().replace("num_epochs = 3\n", "")
        path.write_text(text.replace('logging = "text"', f'logging = "text"\nnum_iterations = '
                                                         f'{iterations}\neval_every_n_steps = 3'))
        return path
    one = steps("one", 6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(["--parameters", str(one)]) == 0
    finally:
        torch.set_num_threads(threads)
    two = steps("two", 3)
    proc = torchrun(two)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    proc = torchrun(two, "--continue_from_step", "3", "--num_iterations", "6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = tmp_path / "Results" / "one", tmp_path / "Results" / "two"
    assert [r["data-epoch"] for r in rows(b)] == ["0.75", "1.5"]
    assert close(rows(a), rows(b))
    wa, wb = model_of(a, "epoch_2.pt"), model_of(b, "epoch_2.pt")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # and bitwise the uninterrupted 2-process run
    proc = torchrun(steps("whole", 6))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    c = tmp_path / "Results" / "whole"
    assert no_timing(rows(c)) == no_timing(rows(b))
    assert all(torch.equal(v, wb[k]) for k, v in model_of(c, "epoch_2.pt").items())


@pytest.mark.slow
def test_killed_job_continues_exactly_and_sigterm_saves_once(write_config, tmp_path):
    whole = config(write_config, "whole", epochs=4, repeat=30)
    proc = torchrun(whole)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    reference = tmp_path / "Results" / "whole"

    # kill -9 the whole job after its first epoch, then continue
    path = config(write_config, "killed", epochs=4, repeat=30)
    node = tmp_path / "Results" / "killed"
    proc = torchrun(path, wait=False)
    _wait_for(lambda: (node / "saved_models" / "epoch_1.pt").exists(), proc)
    kill_job(proc, signal.SIGKILL)
    proc.wait()
    assert not (node / "saved_models" / "epoch_4.pt").exists()  # killed mid-run
    done = torchrun(path, "--continue_from_epoch", "last")
    assert done.returncode == 0, done.stdout + done.stderr
    assert no_timing(rows(node)) == no_timing(rows(reference))
    assert all(torch.equal(v, model_of(reference, "epoch_4.pt")[k])
               for k, v in model_of(node, "epoch_4.pt").items())

    # SIGTERM (a scheduler's pre-emption) mid-epoch: one checkpoint, every rank exits
    path = config(write_config, "termed", epochs=4, repeat=30)
    node = tmp_path / "Results" / "termed"
    proc = torchrun(path, wait=False)
    _wait_for(lambda: (node / "saved_models" / "epoch_1.pt").exists(), proc)
    kill_job(proc, signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert json.loads((node / "status.json").read_text())["state"] == "interrupted", out
    assert out.count("finishing the current step and saving") >= 1
    done = torchrun(path, "--continue_from_epoch", "last")
    assert done.returncode == 0, done.stdout + done.stderr
    assert no_timing(rows(node)) == no_timing(rows(reference))


def test_gan_with_ema_two_processes_equal_one(write_config, tmp_path):
    """Both networks under DDP (the discriminator's two forward passes, one backward), and the
    EMA weights: every rank keeps the same average (the sharded validation scores the EMA
    weights of every rank, and equals the one-process run's)."""
    gan = ('ema_decay = 0.9\n')
    disc = ('\n[model.discriminator]\nname = "unet_discriminator"\nnum_feat = 4\n'
            'gan_type = "vanilla"\ngan_weight = 0.1\nlr = 1e-3\n')
    # (not ragan here: its discriminator's last bias cancels out of the loss, so Adam turns
    # the ranks' all-reduce rounding of a zero gradient into lr-sized steps)
    paths = {}
    for name in ("gan_one", "gan_two"):
        path = config(write_config, name, epochs=2)
        path.write_text(path.read_text().replace('logging = "text"', f'logging = "text"\n{gan}')
                        .replace('name = "edsr"', 'name = "rrdbnet"')
                        .replace("num_features = 8\nnum_blocks = 1",
                                 "num_feat = 8\nnum_block = 1\nnum_grow_ch = 4") + disc)
        paths[name] = path
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(["--parameters", str(paths["gan_one"])]) == 0
    finally:
        torch.set_num_threads(threads)
    proc = torchrun(paths["gan_two"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = tmp_path / "Results" / "gan_one", tmp_path / "Results" / "gan_two"
    assert close(rows(a), rows(b), rel=1e-4)
    pa = load_checkpoint(a / "saved_models" / "epoch_2.pt")["parts"]
    pb = load_checkpoint(b / "saved_models" / "epoch_2.pt")["parts"]
    for a_, b_ in ((pa["ema"], pb["ema"]), (pa["model"], pb["model"]),
                   (pa["discriminator"]["model"], pb["discriminator"]["model"])):
        worst = max((float((a_[k].float() - b_[k].float()).abs().max()), k) for k in a_)
        assert worst[0] < 1e-5, worst


@pytest.mark.slow
def test_ranks_stop_and_save_when_the_launcher_is_killed(write_config, tmp_path):
    """kill -9 of torchrun alone: its ranks get SIGTERM (they die with their parent), agree to
    stop, save one mid-epoch checkpoint and exit; nothing goes on training unsupervised."""
    path = config(write_config, "orphans", epochs=4, repeat=30)
    node = tmp_path / "Results" / "orphans"
    proc = torchrun(path, wait=False)
    _wait_for(lambda: (node / "saved_models" / "epoch_1.pt").exists(), proc)
    ranks = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the launcher only
    proc.wait(timeout=60)
    deadline = time.time() + 300
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() and
                                         "zombie" not in _state(p) for p in ranks):
        time.sleep(0.1)
    assert not [p for p in ranks if Path(f"/proc/{p}").exists() and "zombie" not in _state(p)]
    status = json.loads((node / "status.json").read_text())
    assert status["state"] == "interrupted", status
    assert status["stop_reason"].startswith("stopped (Ctrl+C/SIGTERM)")  # and saved
    assert ((node / "saved_models" / "interrupted.pt").exists()
            or "after epoch" in status["stop_reason"])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"
