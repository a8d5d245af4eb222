"""Trackers catch up on continue (issue 24, item 8): a continued node's TensorBoard folder gets
the epochs summary.csv has and it lacks (a kill -9 lost them, or a full disk), each exactly
once; a TensorBoard writer that fails is one warning line, not its thread's traceback, and
training goes on. Real processes, a real kill -9, a real full file system."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import rows

pytestmark = pytest.mark.slow


def _events(folder: Path) -> Counter:
    """(tag, step) -> how many times the raw event files hold it (no purging applied)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = Counter()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    found[(value.tag, event.step)] += 1
        except Exception:  # a file cut by the full disk: what it holds was counted
            pass
    return found


def _assert_every_epoch_once(node: Path) -> None:
    counts = _events(node / "tensorboard")
    epochs = [int(r["epoch"]) for r in rows(node)]
    tags = {tag for tag, _ in counts}
    assert {"train/loss", "val/chelsea/PSNR"} <= tags, tags
    for tag in ("train/loss", "val/chelsea/PSNR"):
        steps = sorted(step for (t, step), n in counts.items() if t == tag for _ in range(n))
        assert steps == epochs, (tag, steps)


def _config(write_config, epochs: int, trackers: str):
    return write_config(num_epochs=epochs, aim="aim" in trackers,
                        extra_training=f'logging = "text"\ntrackers = {trackers}')


def _wait(predicate, proc, timeout: float = 300) -> None:
    """Until predicate() holds (bounded; fails early when the process has ended)."""
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _status(node: Path) -> dict:
    try:
        return json.loads((node / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _epochs_done(node: Path) -> int:
    return _status(node).get("epochs_done") or 0


def test_kill_9_then_continue_tracks_every_epoch_exactly_once(write_config, tmp_path):
    path = _config(write_config, 6, '["tensorboard"]')
    node = tmp_path / "Results" / "tiny"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its output worker dies with it
    _wait(lambda: _epochs_done(node) >= 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _epochs_done(node) < 6
    from rumpy.cli.train import main as train_main
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last"]) == 0
    assert [int(r["epoch"]) for r in rows(node)] == [1, 2, 3, 4, 5, 6]
    _assert_every_epoch_once(node)


@pytest.fixture
def full_tensorboard_disk(write_config, tmp_path):
    """A trained epoch 1 (no tracker), and the node's tensorboard/ folder a full 1 MB file
    system of its own (tmpfs: needs root, as on the project's machines)."""
    from rumpy.cli.train import main as train_main
    path = _config(write_config, 1, "[]")
    assert train_main(["--parameters", str(path)]) == 0
    folder = tmp_path / "Results" / "tiny" / "tensorboard"
    folder.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                          capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    filler = folder / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill it to the last byte
        while os.write(handle, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(handle)
    try:
        yield path, folder, filler
    finally:
        subprocess.run(["umount", "-l", str(folder)])


def test_tensorboard_on_a_full_disk_is_one_line_and_catches_up_later(full_tensorboard_disk,
                                                                     tmp_path):
    path, folder, filler = full_tensorboard_disk
    node = folder.parent
    flags = ['training.trackers=["tensorboard"]', "--continue_from_epoch", "last"]
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                           "--num_epochs", "3", *flags], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    failed = [line for line in proc.stderr.splitlines() if "TensorBoard" in line]
    assert len(failed) == 1 and "No space left on device" in failed[0], failed
    assert [int(r["epoch"]) for r in rows(node)] == [1, 2, 3]
    filler.unlink()  # space again: the next continue sends what TensorBoard lacks
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                           "--num_epochs", "4", *flags], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_every_epoch_once(node)


def _aim_epochs(home: Path, run_hash: str) -> dict:
    """{(metric, set or subset): {epoch: value}} of one Aim run, read through Aim's SDK."""
    from test_tracking import aim_runs
    return aim_runs(home)[run_hash][1]


def _assert_aim_has_every_epoch(home: Path, node: Path) -> None:
    from test_tracking import assert_matches_summary
    summary = rows(node)
    metrics = _aim_epochs(home, json.loads((node / "status.json").read_text())["aim_run_hash"])
    for key in (("loss", "train"), ("PSNR", "chelsea")):
        assert sorted(metrics[key]) == [int(r["epoch"]) for r in summary], key
    assert_matches_summary(metrics, summary, "chelsea")


def test_aim_after_kill_9_and_continue_holds_every_epoch(write_config, tmp_path):
    """The reopened Aim run gets the epochs a killed process never flushed to it: whatever
    the kill cut, after the continue it holds each epoch of summary.csv with its value."""
    path = _config(write_config, 6, '["aim"]')
    node = tmp_path / "Results" / "tiny"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    # Aim opens in the output worker after the first epoch: killed once it is in use
    _wait(lambda: _epochs_done(node) >= 3 and "aim_run_hash" in _status(node), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert _epochs_done(node) < 6
    first = json.loads((node / "status.json").read_text())["aim_run_hash"]
    from rumpy.cli.train import main as train_main
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last"]) == 0
    assert [int(r["epoch"]) for r in rows(node)] == [1, 2, 3, 4, 5, 6]
    assert json.loads((node / "status.json").read_text())["aim_run_hash"] == first
    _assert_aim_has_every_epoch(tmp_path / "Results", node)


def test_aim_run_missing_epochs_gets_them_on_the_next_continue(write_config, tmp_path):
    """Deterministic form of the kill's loss: epochs 3-4 trained with Aim off never reached the
    node's Aim run; the next continue with Aim on reopens that run and sends exactly them."""
    from rumpy.cli.train import main as train_main
    path = _config(write_config, 2, '["aim"]')
    node = tmp_path / "Results" / "tiny"
    assert train_main(["--parameters", str(path)]) == 0
    first = json.loads((node / "status.json").read_text())["aim_run_hash"]
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "4", "training.trackers=[]"]) == 0
    assert sorted(_aim_epochs(tmp_path / "Results", first)[("loss", "train")]) == [1, 2]
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "5"]) == 0
    assert json.loads((node / "status.json").read_text())["aim_run_hash"] == first
    _assert_aim_has_every_epoch(tmp_path / "Results", node)
