"""Checkpoints written from a copy in the background (the CUDA path), run here on the CPU: the
files, their order and exact continuation are those of the synchronous path."""
from __future__ import annotations

import threading

import pytest
import torch

from conftest import no_timing, rows, same_weights, weights
from rumpy.cli.train import main as train_main
from rumpy.training import saving
from rumpy.training.background import BackgroundSaver, snapshot
from rumpy.core.checkpoint import load_checkpoint


def test_snapshot_is_a_copy_that_later_changes_do_not_reach():
    live = {"model": {"w": torch.ones(3)}, "rng": [torch.zeros(2), 5], "step": (1, "x")}
    copy = snapshot(live)
    live["model"]["w"].add_(1)
    live["rng"][0].fill_(7)
    assert torch.equal(copy["model"]["w"], torch.ones(3)) and torch.equal(copy["rng"][0],
                                                                            torch.zeros(2))
    assert copy["rng"][1] == 5 and copy["step"] == (1, "x")


def test_jobs_run_in_order_and_an_error_reaches_the_caller():
    saver = BackgroundSaver()
    done, release = [], threading.Event()
    saver.submit(release.wait)
    for i in range(5):
        saver.submit(done.append, i)
    assert done == []  # queued behind the first job: the caller did not wait
    release.set()
    saver.wait()
    assert done == [0, 1, 2, 3, 4]

    def fail():
        raise OSError(28, "No space left on device")
    saver.submit(fail)
    saver.submit(done.append, "skipped")  # after a failure the rest would be out of order
    with pytest.raises(OSError, match="No space left"):
        saver.wait()
    assert done[-1] == 4
    saver.wait()  # raised once


@pytest.fixture
def background(monkeypatch):
    monkeypatch.setattr(saving, "BACKGROUND_DEVICES", ("cuda", "cpu"))


STEP_LR = 'scheduler = "step_lr"\nscheduler_params = {step_size = 1, gamma = 0.7}'


@pytest.mark.slow
def test_background_writes_continue_exactly_and_keep_retention(write_config, tmp_path,
                                                              background):
    path = write_config(num_epochs=4, extra_params=STEP_LR,
                        extra_training='logging = "text"\nkeep_every_n_epochs = 0\n'
                                       'keep_last_n = 1\nsave_checkpoint_frequency = 2\n'
                                       'weights_snapshots = true')
    assert train_main(["--parameters", str(path), "--experiment_name", "whole"]) == 0
    assert train_main(["--parameters", str(path), "--experiment_name", "split",
                       "--num_epochs", "2"]) == 0
    assert train_main(["--parameters", str(path), "--experiment_name", "split",
                       "--continue_from_epoch", "last"]) == 0
    whole, split = tmp_path / "Results" / "whole", tmp_path / "Results" / "split"
    assert no_timing(rows(whole)) == no_timing(rows(split))
    assert same_weights(weights(whole, 4), weights(split, 4))
    models = sorted(p.name for p in (whole / "saved_models").iterdir())
    best = load_checkpoint(whole / "saved_models" / "best.pt")["epoch"]
    kept = {"epoch_4.pt", f"epoch_{best}.pt"} if best % 2 == 0 else {"epoch_4.pt"}
    assert {m for m in models if m.startswith("epoch_") and m.endswith(".pt")} == kept
    assert "weights_3.pt" in models and "last.pt" in models
    for name in ("last.pt", "best.pt", "weights_3.pt"):
        load_checkpoint(whole / "saved_models" / name)  # verified: sidecar and contents agree
