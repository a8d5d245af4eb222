"""The result tree, done for real: continue, fork, kill, corrupt, lock, early stopping, tree."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import no_timing, rows, same_weights, weights

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.core.checkpoint import load_checkpoint
from rumpy.training.setup import prepare

STEP_LR = 'scheduler = "step_lr"\nscheduler_params = {step_size = 1, gamma = 0.7}'


def train(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def refused(path: Path, *flags: str) -> str:
    cfg = load_config(path, _flags(flags))
    with pytest.raises(ConfigError) as info:
        prepare(cfg)
    return str(info.value)


def _flags(flags: tuple) -> dict:
    out, it = {}, iter(flags)
    for flag in it:
        key = flag.lstrip("-")
        if key in ("new_branch", "overwrite_data", "skip_optimizer_load", "skip_scheduler_load"):
            out[key] = True
        else:
            value = next(it)
            out[key] = int(value) if value.isdigit() else value
    return out


def tree_files(folder: Path, skip: str | None = None) -> dict[str, str]:
    """Every file under folder (except the subfolder `skip`) with its SHA-256."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not (skip and (folder / skip) in p.parents):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def same_rng(a: Path, b: Path, epoch: int) -> bool:
    """The global random state two nodes saved after `epoch`: torch's, numpy's, Python's."""
    ra, rb = (load_checkpoint(n / "saved_models" / f"epoch_{epoch}.pt")["rng"] for n in (a, b))
    return (torch.equal(ra["torch"], rb["torch"]) and ra["python"] == rb["python"]
            and torch.equal(ra["numpy"]["keys"], rb["numpy"]["keys"])
            and ra["numpy"]["pos"] == rb["numpy"]["pos"])


@pytest.fixture
def cfg(write_config):
    return write_config(num_epochs=4, extra_params=STEP_LR)


@pytest.mark.slow
def test_continue_equals_uninterrupted(cfg, tmp_path):
    assert train(cfg, "--experiment_name", "whole") == 0
    assert train(cfg, "--experiment_name", "split", "--num_epochs", "2") == 0
    assert train(cfg, "--experiment_name", "split", "--continue_from_epoch", "last") == 0
    whole, split = tmp_path / "Results" / "whole", tmp_path / "Results" / "split"
    assert no_timing(rows(whole)) == no_timing(rows(split))
    assert len(rows(split)) == 4
    for epoch in (2, 4):
        assert same_weights(weights(whole, epoch), weights(split, epoch))
    assert same_rng(whole, split, 4)  # a model drawing random numbers would go on alike
    assert json.loads((split / "status.json").read_text())["state"] == "finished"


@pytest.mark.slow
def test_fork_with_new_lr_leaves_parent_untouched(cfg, tmp_path):
    assert train(cfg) == 0
    parent = tmp_path / "Results" / "tiny"
    before = tree_files(parent)
    text = cfg.read_text().replace("lr = 1e-3", "lr = 2e-4")
    half = cfg.with_name("half.toml")
    half.write_text(text)
    assert train(half, "--continue_from_epoch", "2", "--new_branch", "--new_branch_name",
                 "lr_half") == 0
    branch = parent / "lr_half"
    assert tree_files(parent, skip="lr_half") == before  # parent byte-for-byte unchanged
    r_parent, r_branch = rows(parent), rows(branch)
    assert no_timing(r_branch[:2]) == [{**r, "inherited": "1"} for r in no_timing(r_parent[:2])]
    assert [r["inherited"] for r in r_branch] == ["1", "1", "0", "0"]
    # the new lr, advanced by the same step_lr schedule to the fork epoch: 2e-4 * 0.7^2
    assert float(r_branch[2]["learning-rate"]) == pytest.approx(2e-4 * 0.7 ** 2)
    assert float(r_parent[2]["learning-rate"]) == pytest.approx(1e-3 * 0.7 ** 2)
    assert r_branch[2]["train-loss"] != r_parent[2]["train-loss"]
    lineage = json.loads((branch / "lineage.json").read_text())
    assert lineage["fork_epoch"] == 2 and lineage["parent"] == ""
    assert lineage["fork_checkpoint"] == "saved_models/epoch_2.pt"
    assert lineage["fork_checkpoint_sha256"] == \
        hashlib.sha256((parent / "saved_models" / "epoch_2.pt").read_bytes()).hexdigest()
    assert lineage["config_diff"]["model.internal_params.lr"] == [1e-3, 2e-4]
    # the fork checkpoint is referenced, not copied
    assert sorted(p.name for p in (branch / "saved_models").glob("*.pt")) == \
        ["best.pt", "epoch_3.pt", "epoch_4.pt", "last.pt"]


def test_branch_with_unchanged_config_equals_parent(cfg, tmp_path):
    assert train(cfg) == 0
    assert train(cfg, "--continue_from_epoch", "2", "--new_branch") == 0
    parent = tmp_path / "Results" / "tiny"
    branch = parent / "branch_epoch_2"
    assert no_timing(rows(branch))[2:] == no_timing(rows(parent))[2:]
    assert same_weights(weights(parent, 4), weights(branch, 4))


def test_skip_optimizer_load_really_resets_it(cfg, tmp_path):
    assert train(cfg) == 0
    assert train(cfg, "--continue_from_epoch", "2", "--new_branch", "--skip_optimizer_load",
                 "--new_branch_name", "fresh_opt") == 0
    parent = tmp_path / "Results" / "tiny"
    assert rows(parent / "fresh_opt")[2]["train-loss"] != rows(parent)[2]["train-loss"]
    state = load_checkpoint(parent / "fresh_opt" / "saved_models" / "epoch_3.pt")
    # Adam's step count restarted: one epoch of 2 steps since the fork
    assert int(state["parts"]["optimizer"]["state"][0]["step"]) == 2


def _slow_config(write_config, name: str, epochs: int = 3):
    text = write_config(num_epochs=epochs, params="num_features = 16\nnum_blocks = 2",
                        extra_params=STEP_LR, extra_training='logging = "text"').read_text()
    return write_config(name=name, text=text.replace("crop = 12", "crop = 16\nrepeat = 60"))


def _spawn(path: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end, "timed out"
        time.sleep(0.02)


def _wait_into_epoch_2(node: Path, proc: subprocess.Popen) -> None:
    """Until the subprocess is in the middle of training epoch 2."""
    _wait_for(node / "saved_models" / "epoch_1.pt.sha256", proc)
    while json.loads((node / "status.json").read_text()).get("epochs_done") != 1:
        time.sleep(0.01)  # epoch 1's bookkeeping is over: epoch 2 is training
    time.sleep(0.2)


@pytest.fixture(scope="module")
def slow_whole(tiny_sets, tmp_path_factory) -> Path:
    """The uninterrupted run of _slow_config, trained once for the interrupt tests of this
    module (their runs differ from it only in where they are saved)."""
    from conftest import tiny_toml
    base = tmp_path_factory.mktemp("slow_whole")
    text = tiny_toml(tiny_sets, base / "Results", base / "cache", num_epochs=3,
                     params="num_features = 16\nnum_blocks = 2", extra_params=STEP_LR,
                     extra_training='logging = "text"')
    (base / "slow.toml").write_text(text.replace("crop = 12", "crop = 16\nrepeat = 60"))
    assert train(base / "slow.toml", "--experiment_name", "whole") == 0
    return base / "Results" / "whole"


@pytest.mark.slow
def test_sigkill_mid_epoch_then_continue_is_exact(write_config, tmp_path, slow_whole):
    path = _slow_config(write_config, "slow.toml")
    node = tmp_path / "Results" / "killed"
    proc = _spawn(path, "--experiment_name", "killed")
    _wait_into_epoch_2(node, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    out = _tree(node)
    assert "[crashed]" in out.splitlines()[0]
    assert train(path, "--experiment_name", "killed", "--continue_from_epoch", "last") == 0
    assert no_timing(rows(node)) == no_timing(rows(slow_whole))
    assert same_weights(weights(node, 3), weights(slow_whole, 3))
    assert same_rng(node, slow_whole, 3)


@pytest.mark.slow
def test_ctrl_c_saves_and_continue_is_exact(write_config, tmp_path, slow_whole):
    path = _slow_config(write_config, "slow.toml")
    node = tmp_path / "Results" / "stopped"
    proc = _spawn(path, "--experiment_name", "stopped")
    _wait_into_epoch_2(node, proc)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    status = json.loads((node / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert (node / "saved_models" / "interrupted.pt").exists()
    assert status["stop_reason"].startswith("stopped (Ctrl+C/SIGTERM) during epoch 2 (step ")
    assert train(path, "--experiment_name", "stopped", "--continue_from_epoch", "last") == 0
    assert no_timing(rows(node)) == no_timing(rows(slow_whole))
    assert same_weights(weights(node, 3), weights(slow_whole, 3))
    assert same_rng(node, slow_whole, 3)
    assert not (node / "saved_models" / "interrupted.pt").exists()


@pytest.mark.slow
def test_truncated_checkpoint_is_skipped(cfg, tmp_path, caplog):
    assert train(cfg, "--experiment_name", "whole") == 0
    assert train(cfg, "--experiment_name", "broken", "--num_epochs", "3") == 0
    node = tmp_path / "Results" / "broken"
    ckpt = node / "saved_models" / "epoch_3.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with caplog.at_level("WARNING", logger="rumpy"):
        assert train(cfg, "--experiment_name", "broken", "--continue_from_epoch", "last") == 0
    assert "checksum mismatch" in caplog.text and "falling back" in caplog.text
    assert (node / "saved_models" / "epoch_3.pt.corrupt").exists()
    assert no_timing(rows(node)) == no_timing(rows(tmp_path / "Results" / "whole"))
    assert same_weights(weights(node, 4), weights(tmp_path / "Results" / "whole", 4))


def test_second_writer_is_refused_and_stale_lock_taken_over(cfg, tmp_path):
    assert train(cfg, "--num_epochs", "2") == 0
    node = tmp_path / "Results" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from rumpy.tree.lock import NodeLock; "
        f"NodeLock(Path({str(node)!r})).acquire(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        msg = refused(cfg, "--continue_from_epoch", "last")
        assert f"is being trained by process {holder.pid}" in msg
    finally:
        holder.kill()
        holder.wait()
    assert (node / ".lock").exists()  # stale now: its process is gone
    assert train(cfg, "--continue_from_epoch", "last") == 0
    assert len(rows(node)) == 4 and not (node / ".lock").exists()


def test_early_stopping_fires_and_survives_continue(write_config, tmp_path):
    # min_delta 100: only the first validation "improves", so patience 2 stops at epoch 3
    path = write_config(num_epochs=10, extra_training="early_stopping_patience = 2\n"
                                                      "early_stopping_min_delta = 100.0")
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    assert [r["epoch"] for r in rows(node)] == ["1", "2", "3"]
    status = json.loads((node / "status.json").read_text())
    assert status["state"] == "stopped_early" and "best" in status["stop_reason"]
    assert status["best"]["epoch"] == 1 or status["best"]["epoch"] >= 1
    assert "stopped early" in refused(path, "--continue_from_epoch", "last")
    # the counter survives: with patience 3 one more bad validation stops it again
    assert train(path, "--continue_from_epoch", "last", "--early_stopping_patience", "3") == 0
    assert [r["epoch"] for r in rows(node)] == ["1", "2", "3", "4"]
    assert json.loads((node / "status.json").read_text())["state"] == "stopped_early"


def _tree(node: Path) -> str:
    import io
    from contextlib import redirect_stdout
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert rumpy_main(["tree", str(node)]) == 0
    return buffer.getvalue()


@pytest.mark.slow
def test_rumpy_tree_three_levels(cfg, tmp_path):
    assert train(cfg) == 0
    assert train(cfg, "--continue_from_epoch", "2", "--new_branch", "--new_branch_name",
                 "lr_half") == 0
    assert train(cfg, "--branch_root", "lr_half", "--continue_from_epoch", "best", "--new_branch",
                 "--new_branch_name", "warm", "--num_epochs", "6") == 0
    node = tmp_path / "Results" / "tiny"
    best = json.loads((node / "lr_half" / "status.json").read_text())["best"]["epoch"]
    psnr = {int(r["epoch"]): float(r["val-PSNR"]) for r in rows(node / "lr_half")}
    assert best == max(psnr, key=psnr.get)
    out = _tree(node).splitlines()
    assert len(out) == 3
    assert out[0].startswith("tiny  [finished]  epochs 1-4  best val-PSNR")
    assert out[1].startswith("└── lr_half  [finished]  fork @ 2  epochs 3-4  best val-PSNR")
    assert out[2].startswith(f"    └── warm  [finished]  fork @ {best}  epochs {best + 1}-6  "
                             f"best val-PSNR")
    assert len(rows(node / "lr_half" / "warm")) == 6


def test_in_place_rules(cfg, tmp_path):
    assert train(cfg) == 0
    node = tmp_path / "Results" / "tiny"
    msg = refused(cfg, "--continue_from_epoch", "2")
    assert "epoch 2 is not the last epoch (4)" in msg and "new_branch" in msg
    changed = cfg.with_name("changed.toml")
    changed.write_text(cfg.read_text().replace("lr = 1e-3", "lr = 5e-4"))
    msg = refused(changed, "--continue_from_epoch", "last", "--num_epochs", "6")
    assert "model.internal_params.lr: differs from" in msg and "new_branch" in msg
    arch = cfg.with_name("arch.toml")
    arch.write_text(cfg.read_text().replace("num_blocks = 1", "num_blocks = 2"))
    msg = refused(arch, "--continue_from_epoch", "2", "--new_branch")
    assert "model.internal_params.num_blocks: the architecture cannot change" in msg
    assert "already done" in refused(cfg, "--continue_from_epoch", "last")
    for bad in ("../escape", "saved_models", "a/b"):
        assert "new_branch_name" in refused(cfg, "--continue_from_epoch", "2", "--new_branch",
                                            "--new_branch_name", bad)
    assert "no run at" in refused(cfg, "--continue_from_epoch", "last", "--branch_root", "nope")
    assert train(cfg, "--continue_from_epoch", "3", "--new_branch", "--new_branch_name", "b3") == 0
    assert "comes before branch b3's fork (epoch 3)" in refused(
        cfg, "--branch_root", "b3", "--continue_from_epoch", "2", "--overwrite_data")
    assert sorted(p.name for p in node.iterdir() if p.is_dir()) == \
        ["b3", "result_outputs", "saved_models"]


@pytest.mark.slow
def test_overwrite_data_truncates_and_protects_forks(cfg, tmp_path, caplog):
    assert train(cfg, "--experiment_name", "whole") == 0
    assert train(cfg) == 0
    node = tmp_path / "Results" / "tiny"
    with caplog.at_level("WARNING", logger="rumpy"):
        assert train(cfg, "--continue_from_epoch", "2", "--overwrite_data") == 0
    assert "removed epochs [3, 4]" in caplog.text
    assert no_timing(rows(node)) == no_timing(rows(tmp_path / "Results" / "whole"))
    assert train(cfg, "--continue_from_epoch", "3", "--new_branch") == 0
    msg = refused(cfg, "--continue_from_epoch", "2", "--overwrite_data")
    assert "branches were forked from epochs [3]" in msg
    assert "has branches" in refused(cfg, "--overwrite_data")


@pytest.mark.slow
def test_retention_keeps_best_last_and_fork_points(write_config, tmp_path):
    path = write_config(num_epochs=2, extra_training="keep_every_n_epochs = 0\nkeep_last_n = 0")
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    assert "no checkpoint of epoch 1 (saved epochs: 2)" in refused(
        path, "--continue_from_epoch", "1", "--new_branch")
    assert train(path, "--continue_from_epoch", "2", "--new_branch", "--num_epochs", "3") == 0
    assert train(path, "--continue_from_epoch", "last", "--num_epochs", "6") == 0
    kept = sorted(int(p.stem.split("_")[1]) for p in (node / "saved_models").glob("epoch_*.pt"))
    best = json.loads((node / "status.json").read_text())["best"]["epoch"]
    assert kept == sorted({2, 6, best})  # fork point, last, best
    # a branch of the branch still finds the fork checkpoint, in the root node
    assert train(path, "--branch_root", "branch_epoch_2", "--continue_from_epoch", "2",
                 "--new_branch", "--new_branch_name", "again", "--num_epochs", "3") == 0


def test_continue_a_run_on_the_builtin_quickstart_set(tmp_path):
    """Built-in sets get their folders filled in before the config is compared on continue."""
    path = tmp_path / "qs.toml"
    path.write_text(f"""
experiment = "qs"
experiment_save_loc = "{tmp_path / 'Results'}"
[training]
num_epochs = 1
gpu = "off"
[model]
name = "edsr"
[model.internal_params]
scale = 2
num_features = 4
num_blocks = 1
[data]
batch_size = 2
dataloader_threads = 0
cache_dir = "{tmp_path / 'cache'}"
[data.training_sets.quickstart]
crop = 8
[data.eval_sets.quickstart]
crop = 16
""")
    assert train(path) == 0
    assert train(path, "--continue_from_epoch", "last", "--num_epochs", "2") == 0
    assert len(rows(tmp_path / "Results" / "qs")) == 2


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(write_config, tmp_path):
    path = _slow_config(write_config, "slow.toml", epochs=2)
    node = tmp_path / "Results" / "tiny"
    proc = _spawn(path)
    _wait_for(node / "status.json", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    assert json.loads((node / "status.json").read_text())["state"] == "interrupted"
    assert train(path, "--continue_from_epoch", "last") == 0
    assert len(rows(node)) == 2


def test_best_load_metric_without_prefix_continues_from_best(write_config, tmp_path):
    """best_load_metric = "PSNR" means val-PSNR, for training and for --continue_from_epoch best."""
    path = write_config(num_epochs=3, extra_training='best_load_metric = "PSNR"')
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    psnr = [float(r["val-PSNR"]) for r in rows(node)]
    best = psnr.index(max(psnr)) + 1
    assert json.loads((node / "status.json").read_text())["best"]["metric"] == "val-PSNR"
    assert train(path, "--continue_from_epoch", "best", "--new_branch", "--new_branch_name",
                 "from_best", "--num_epochs", "4") == 0
    assert json.loads((node / "from_best" / "lineage.json").read_text())["fork_epoch"] == best


@pytest.mark.slow
def test_continue_with_more_epochs_rebuilds_a_cosine_schedule_for_the_new_length(write_config,
                                                                                 tmp_path):
    """Continuing a 2-epoch cosine run to 4 epochs trains epochs 3-4 with the lr a 4-epoch run
    has there (not lr 0, nor a cosine climbing back up)."""
    text = write_config(extra_training='logging = "text"').read_text().replace(
        "lr = 1e-3", 'lr = 1e-3\nscheduler = "cosine"')
    short, full = tmp_path / "short.toml", tmp_path / "full.toml"
    short.write_text(text)
    full.write_text(text.replace('experiment = "tiny"', 'experiment = "full"'))
    assert train(short) == 0
    assert train(short, "--continue_from_epoch", "last", "--num_epochs", "4") == 0
    assert train(full, "--num_epochs", "4") == 0
    continued = [float(r["learning-rate"]) for r in rows(tmp_path / "Results" / "tiny")]
    reference = [float(r["learning-rate"]) for r in rows(tmp_path / "Results" / "full")]
    assert continued[2:] == pytest.approx(reference[2:])
    assert continued[2] > 0
