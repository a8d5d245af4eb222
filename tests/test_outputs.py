"""A run's outputs made off the training process's critical path (training/output_worker.py):
plots, sample strips and tracker data are complete after a normal end, after Ctrl+C and after
SIGTERM of a real training process; a failing output only warns and training finishes exactly."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import no_timing, rows, same_weights, weights
from PIL import Image

from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.training.callbacks import Callback, default_callbacks
from rumpy.training.output_worker import OutputWorker
from rumpy.training.setup import prepare, start
from rumpy.training.trainer import train

PLOTS = ("loss", "learning_rate", "PSNR", "SSIM")


def _config(write_config, epochs: int, name: str = "cfg.toml", slow: bool = False) -> Path:
    text = write_config(num_epochs=epochs, extra_training='trackers = ["tensorboard"]').read_text()
    if slow:  # epochs of a few tenths of a second, so that a signal lands inside the run
        text = text.replace("crop = 12", "crop = 16\nrepeat = 30")
    return write_config(name=name, text=text)


def _tensorboard(node: Path) -> tuple[dict, dict]:
    """{tag: [steps]} of the scalars and of the images in the node's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(node / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    return ({t: [e.step for e in events.Scalars(t)] for t in tags["scalars"]},
            {t: [e.step for e in events.Images(t)] for t in tags["images"]})


def assert_outputs_complete(node: Path) -> None:
    """Every epoch in summary.csv has its sample strip and its tracker data, and the plots were
    drawn after the last epoch's checkpoint (so they show it)."""
    epochs = [int(r["epoch"]) for r in rows(node)]
    assert epochs, "no epoch finished"
    out = node / "result_outputs"
    for epoch in epochs:
        strips = list((out / f"epoch_{epoch}_samples").glob("chelsea_*.png"))
        assert len(strips) == 1, epoch  # num_samples = 1
        Image.open(strips[0]).verify()
    last = (node / "saved_models" / f"epoch_{epochs[-1]}.pt").stat().st_mtime_ns
    for name in PLOTS:
        plot = out / f"{name}.png"
        Image.open(plot).verify()
        assert plot.stat().st_mtime_ns >= last, f"{name}.png does not show the last epoch"
    scalars, images = _tensorboard(node)
    assert scalars["val/chelsea/PSNR"] == epochs and scalars["train/loss"] == epochs
    assert list(images.values()) == [epochs]
    assert not list(node.rglob(".*.tmp")), "a half-written output was left behind"


def test_outputs_are_complete_after_a_normal_end(write_config, tmp_path):
    assert train_main(["--parameters", str(_config(write_config, 3))]) == 0
    assert_outputs_complete(tmp_path / "Results" / "tiny")


def _spawn(path: Path) -> subprocess.Popen:
    # its own session, as a terminal's foreground job or a cluster's job step
    return subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_outputs_are_complete_after_a_signal_to_the_process_group(write_config, tmp_path, sig):
    path = _config(write_config, 40, slow=True)
    node = tmp_path / "Results" / "tiny"
    proc = _spawn(path)
    end = time.time() + 120
    while not (node / "status.json").exists() or \
            json.loads((node / "status.json").read_text()).get("epochs_done", 0) < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end
        time.sleep(0.02)
    os.killpg(proc.pid, sig)  # Ctrl+C in a terminal reaches the whole foreground group
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "output worker" not in output, output
    status = json.loads((node / "status.json").read_text())
    assert status["state"] == "interrupted" and status["epochs_done"] < 40
    assert_outputs_complete(node)
    with pytest.raises(ProcessLookupError):  # the output worker is gone with the run
        os.killpg(proc.pid, 0)


def test_an_unwritable_plot_only_warns_and_training_finishes_exactly(write_config, tmp_path,
                                                                     caplog):
    path = _config(write_config, 3)
    assert train_main(["--parameters", str(path), "--experiment_name", "clean"]) == 0
    run = prepare(load_config(path))
    start(run)
    node, clean = tmp_path / "Results" / "tiny", tmp_path / "Results" / "clean"
    out = node / "result_outputs"
    (out / "PSNR.png").mkdir()  # a folder where the plot goes: every write of it fails
    with caplog.at_level("WARNING", logger="rumpy"):
        assert train(run) == "finished"
    assert caplog.text.count("Plots: could not write") == 1
    assert no_timing(rows(node)) == no_timing(rows(clean))
    assert same_weights(weights(node, 3), weights(clean, 3))
    assert (out / "PSNR.png").is_dir() and (out / "SSIM.png").is_file()


def test_an_unwritable_sample_strip_only_warns_and_the_others_are_written(write_config,
                                                                          tmp_path, caplog):
    """Strips are written on the worker's write thread: a failure there is still the Visuals
    output's one warning, and the other epochs' strips are complete."""
    run = prepare(load_config(_config(write_config, 3)))
    start(run)
    out = tmp_path / "Results" / "tiny" / "result_outputs"
    (out / "epoch_2_samples").write_text("")  # a file where the folder goes
    with caplog.at_level("WARNING", logger="rumpy"):
        assert train(run) == "finished"
    assert caplog.text.count("Visuals: could not write") == 1
    for epoch in (1, 3):
        Image.open(next((out / f"epoch_{epoch}_samples").glob("chelsea_*.png"))).verify()


def _explode(state, epoch: int) -> None:
    raise RuntimeError(f"output job of epoch {epoch} failed")


class _Exploding(Callback):
    """A user's output that fails in the worker every epoch."""

    def __init__(self):
        self.worker = OutputWorker()

    def on_epoch_end(self, run, epoch, row, result) -> None:
        self.worker.submit(run, _explode, epoch, label="Exploding")

    def on_end(self, run, state) -> None:
        self.worker.drain()

    def close(self, run) -> None:
        self.worker.abort()


def test_a_failing_output_job_warns_once_and_training_finishes_exactly(write_config, tmp_path,
                                                                       caplog):
    path = _config(write_config, 3)
    assert train_main(["--parameters", str(path), "--experiment_name", "clean"]) == 0
    run = prepare(load_config(path))
    start(run)
    with caplog.at_level("WARNING", logger="rumpy"):
        assert train(run, default_callbacks() + [_Exploding()]) == "finished"
    assert caplog.text.count("Exploding: could not write (RuntimeError: output job of epoch 1 "
                             "failed)") == 1
    node, clean = tmp_path / "Results" / "tiny", tmp_path / "Results" / "clean"
    assert no_timing(rows(node)) == no_timing(rows(clean))
    assert same_weights(weights(node, 3), weights(clean, 3))
    assert_outputs_complete(node)


def _record(state, path: str, value: int) -> None:
    time.sleep(0.2)
    with open(path, "a") as f:
        f.write(f"{value}\n")


def test_a_superseded_job_is_skipped_and_a_dead_worker_only_warns(tmp_path, caplog):
    worker = OutputWorker()
    log = tmp_path / "drawn.txt"
    for value in range(5):  # each replaces the one before it while that one still waits
        worker.submit(None, _record, str(log), value, key="plot")
    worker.drain()
    drawn = log.read_text().split()
    # the newest is always drawn; of the others at most the one the worker had already taken
    # when the next arrived (which one depends on when the worker process got going)
    assert drawn[-1] == "4" and len(drawn) <= 2 and drawn == sorted(drawn)
    dead = OutputWorker()
    dead.submit(None, _record, str(log), 9)
    os.kill(dead._proc.pid, signal.SIGKILL)
    with caplog.at_level("WARNING", logger="rumpy"):
        dead.drain()
    assert "the output worker ended early" in caplog.text


def test_plots_are_redrawn_at_most_every_interval_and_at_the_end(write_config, tmp_path,
                                                                 monkeypatch):
    """Short epochs do not each pay for four PNG plots and the sample images: by default at
    most every 30 s of training (output_interval_s), and at the end (here: epoch 5 of 5 only;
    a Ctrl+C's end: tests above); with no interval, every epoch."""
    drawn, images = [], []
    submit = OutputWorker.submit

    def counting(self, run, fn, *args, **kw):
        if kw.get("key") == "plots":
            drawn.append(list(args[0])[-1]["epoch"])  # the last row the plot shows
        if kw.get("label") == "Visuals":
            images.append(args[0])
        return submit(self, run, fn, *args, **kw)

    monkeypatch.setattr(OutputWorker, "submit", counting)
    path = _config(write_config, 5)
    path.write_text(path.read_text().replace("output_interval_s = 0\n", ""))
    assert train_main(["--parameters", str(path)]) == 0
    assert drawn == [5] and images == [5]
    node = tmp_path / "Results" / "tiny"
    assert sorted(p.name for p in (node / "result_outputs").glob("epoch_*_samples")) == \
        ["epoch_5_samples"]
    drawn.clear(), images.clear()
    assert train_main(["--parameters", str(path), "--experiment_name", "every",
                       "training.output_interval_s=0"]) == 0
    assert drawn == images == [1, 2, 3, 4, 5]


def _late(state, path: str) -> None:  # made importable only after the worker forked (below)
    _record(state, path, 0)


def test_a_job_that_cannot_be_sent_or_read_warns_and_the_others_are_made(tmp_path, caplog):
    """A plugin's job with an unpicklable argument, or whose function the worker cannot import,
    fails as that job (one warning) instead of stopping the worker, and the drain ends
    without waiting out its patience."""
    worker = OutputWorker()
    log = tmp_path / "drawn.txt"
    worker.submit(None, _record, str(log), 1)
    worker.submit(None, _record, str(log), lambda: 2)  # a lambda cannot be pickled
    late = types.ModuleType("rumpy_test_late_module")  # exists in this process only
    late._late = _late
    _late.__module__ = late.__name__
    sys.modules[late.__name__] = late
    try:
        worker.submit(None, _late, str(log))
        worker.submit(None, _record, str(log), 3)
        with caplog.at_level("WARNING", logger="rumpy"):
            worker.drain(patience=60)
    finally:
        del sys.modules[late.__name__]
        _late.__module__ = __name__
    assert log.read_text().split() == ["1", "3"]
    assert "cannot be sent to the output worker" in caplog.text
    assert "could not be read by the output worker" in caplog.text
    assert "made no progress" not in caplog.text and "ended early" not in caplog.text


class _SlowToOpen:
    """A tracker whose opening takes a while (a tracking server far away)."""

    status: dict = {}

    @classmethod
    def open(cls, run):
        time.sleep(0.5)
        (run.folder.root / "opened").write_text("")
        return cls()

    def track_row(self, row) -> None:
        pass

    def track_steps(self, rows) -> None:
        pass

    def track_images(self, *args, **kwargs) -> None:
        pass

    def ending(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_early_worker_has_opened_the_trackers_before_the_first_epoch(write_config, tmp_path,
                                                                        monkeypatch):
    """The output worker starts before the set-up (its imports beside it) and the first epoch
    waits for the trackers to open, so training never shares the CPU with them."""
    import rumpy.training.callbacks as callbacks
    import rumpy.training.trainer as trainer
    from rumpy.tracking import TRACKERS
    node = tmp_path / "Results" / "tiny"
    seen, started = [], []
    epoch = trainer.train_epoch

    def first_epoch(*args, **kwargs):
        seen.append((node / "opened").exists())
        return epoch(*args, **kwargs)

    early = callbacks.early_output_worker

    def spy(cfg):
        worker = early(cfg)
        started.append(worker.started)
        return worker

    monkeypatch.setattr(trainer, "train_epoch", first_epoch)
    monkeypatch.setattr(callbacks, "early_output_worker", spy)
    monkeypatch.setitem(TRACKERS._entries, "slow_to_open", [(None, _SlowToOpen, {})])
    path = write_config(num_epochs=2, extra_training='trackers = ["slow_to_open"]')
    assert train_main(["--parameters", str(path)]) == 0
    assert started == [True] and seen == [True, True]


def test_a_refused_start_leaves_no_output_worker(write_config, tmp_path, caplog, monkeypatch):
    """The early worker is stopped when the set-up refuses the run (here: it exists)."""
    import rumpy.training.callbacks as callbacks
    path = _config(write_config, 1)
    assert train_main(["--parameters", str(path)]) == 0
    before = sorted(p.name for p in (tmp_path / "Results" / "tiny").rglob("*"))
    workers, early = [], callbacks.early_output_worker
    monkeypatch.setattr(callbacks, "early_output_worker",
                        lambda cfg: workers.append(early(cfg)) or workers[-1])
    with caplog.at_level("ERROR", logger="rumpy"):
        assert train_main(["--parameters", str(path)]) == 2
    assert "already exists" in caplog.text
    assert workers[0].started and not workers[0]._proc.is_alive()
    assert workers[0]._proc not in multiprocessing.active_children()
    assert sorted(p.name for p in (tmp_path / "Results" / "tiny").rglob("*")) == before
