"""Checkpoint policies (issue "Using trained models", section 4): what each policy leaves on disk,
that a continue from last.pt is exact whatever the frequency, that forks from last.pt, best.pt and
weights snapshots work, and init_weights_path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import no_timing, rows, same_weights
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.training.callbacks import Callback, default_callbacks
from rumpy.core.checkpoint import load_checkpoint
from rumpy.training.setup import prepare, start
from rumpy.training.trainer import train as train_loop


def train(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def files(node: Path) -> list[str]:
    return sorted(p.name for p in (node / "saved_models").glob("*.pt"))


def epoch_of(path: Path) -> int:
    return load_checkpoint(path)["epoch"]


class StopAfter(Callback):
    """Ends the run after an epoch, as early stopping does (the public callback hook)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, run, epoch, row, result) -> str | None:
        if epoch == self.epoch:
            return f"stopped after epoch {epoch} by the test"  # a stop request
        return None


def stop_after(path: Path, epoch: int) -> None:
    run = prepare(load_config(path))
    start(run)
    assert train_loop(run, default_callbacks() + [StopAfter(epoch)]) == "stopped_early"


POLICY = 'logging = "text"\nsave_checkpoint_frequency = 3\nkeep_every_n_epochs = 1'


def test_frequency_writes_full_checkpoints_every_n_and_last_pt_always(write_config, tmp_path):
    path = write_config(num_epochs=7, extra_training=POLICY)
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    models = node / "saved_models"
    assert files(node) == ["best.pt", "epoch_3.pt", "epoch_6.pt", "epoch_7.pt", "last.pt"]
    # last.pt is the last epoch's checkpoint itself (a hard link: no extra disk)
    assert os.path.samefile(models / "last.pt", models / "epoch_7.pt")
    assert epoch_of(models / "last.pt") == 7
    best = json.loads((node / "status.json").read_text())["best"]["epoch"]
    assert epoch_of(models / "best.pt") == best
    # every row is in summary.csv although only three epochs have a checkpoint
    assert [r["epoch"] for r in rows(node)] == [str(e) for e in range(1, 8)]


def test_continue_from_last_pt_is_exact(write_config, tmp_path):
    """The run stops after epoch 4 (no epoch_4.pt with frequency 3, only last.pt); continuing
    from 'last' equals a run that never stopped, rows and weights."""
    whole = write_config("whole.toml", experiment="whole", num_epochs=6,
                         extra_training='logging = "text"')
    assert train(whole) == 0
    path = write_config(num_epochs=6, extra_training=POLICY)
    stop_after(path, 4)
    node = tmp_path / "Results" / "tiny"
    assert files(node) == ["best.pt", "epoch_3.pt", "last.pt"]
    assert epoch_of(node / "saved_models" / "last.pt") == 4
    assert train(path, "--continue_from_epoch", "last") == 0
    assert no_timing(rows(node)) == no_timing(rows(tmp_path / "Results" / "whole"))
    assert same_weights(load_checkpoint(node / "saved_models" / "epoch_6.pt")["parts"]["model"],
                        load_checkpoint(tmp_path / "Results" / "whole" / "saved_models" /
                                        "epoch_6.pt")["parts"]["model"])


@pytest.mark.slow
def test_fork_from_an_epoch_only_last_pt_holds_keeps_it_as_an_epoch_checkpoint(write_config,
                                                                              tmp_path):
    path = write_config(num_epochs=6, extra_training=POLICY)
    stop_after(path, 4)
    node = tmp_path / "Results" / "tiny"
    models = node / "saved_models"
    assert train(path, "--continue_from_epoch", "4", "--new_branch", "--new_branch_name", "b",
                 "--num_epochs", "5") == 0
    # the fork point became epoch_4.pt (the same file as last.pt was), and the branch points at it
    assert (models / "epoch_4.pt").is_file()
    lineage = json.loads((node / "b" / "lineage.json").read_text())
    assert lineage["fork_checkpoint"] == "saved_models/epoch_4.pt" and lineage["fork_epoch"] == 4
    # the parent goes on: last.pt moves to epoch 6, the fork point stays and still verifies
    path.write_text(path.read_text().replace("keep_every_n_epochs = 1",
                                             "keep_every_n_epochs = 0\nkeep_last_n = 0"))
    assert train(path, "--continue_from_epoch", "last") == 0
    assert epoch_of(models / "last.pt") == 6
    assert epoch_of(models / "epoch_4.pt") == 4
    assert train(path, "--branch_root", "b", "--continue_from_epoch", "4", "--new_branch",
                 "--new_branch_name", "again", "--num_epochs", "5") == 0


def test_retention_keeps_every_nth_the_newest_n_best_and_fork_points(write_config, tmp_path):
    path = write_config(num_epochs=8, extra_training='logging = "text"\nkeep_every_n_epochs = 3'
                                                     '\nkeep_last_n = 2')
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    best = json.loads((node / "status.json").read_text())["best"]["epoch"]
    kept = {int(p.stem.split("_")[1]) for p in (node / "saved_models").glob("epoch_*.pt")}
    assert kept == {3, 6, 7, 8, best}
    # 'best' resolves to the best epoch that has a checkpoint (best.pt always has it)
    assert epoch_of(node / "saved_models" / "best.pt") == best


def test_save_best_cooldown_limits_how_often_best_pt_moves(write_config, tmp_path):
    path = write_config(num_epochs=4, extra_training='logging = "text"\nsave_best_cooldown = 10')
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    summary = rows(node)
    assert float(summary[-1]["val-PSNR"]) > float(summary[0]["val-PSNR"])  # it did improve
    assert epoch_of(node / "saved_models" / "best.pt") == 1  # but best.pt stayed in cooldown


def test_weights_snapshots_fill_the_gaps_and_a_fork_from_one_starts_a_fresh_optimizer(
        write_config, tmp_path, caplog):
    path = write_config(num_epochs=4, extra_training=POLICY + "\nweights_snapshots = true")
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    models = node / "saved_models"
    assert files(node) == ["best.pt", "epoch_3.pt", "epoch_4.pt", "last.pt", "weights_1.pt",
                           "weights_2.pt"]
    snapshot = load_checkpoint(models / "weights_2.pt")
    assert "optimizer" not in snapshot["parts"] and snapshot["epoch"] == 2
    assert snapshot["summary_row"]["epoch"] == 2
    assert (models / "weights_2.pt").stat().st_size < 0.6 * (models / "epoch_3.pt").stat().st_size
    assert train(path, "--continue_from_epoch", "2", "--new_branch", "--new_branch_name", "w",
                 "--num_epochs", "3") == 0
    assert "has only its weights" in caplog.text and "fresh optimizer" in caplog.text
    lineage = json.loads((node / "w" / "lineage.json").read_text())
    assert lineage["fork_checkpoint"] == "saved_models/weights_2.pt"
    branch_rows = rows(node / "w")
    assert [r["inherited"] for r in branch_rows] == ["1", "1", "0"]
    # the snapshot's weights are where the branch started: an eval of epoch 2 through the branch
    from rumpy import load_experiment
    model = load_experiment(node / "w", epoch=2)
    assert same_weights({k: v for k, v in model.state_dict().items()}, snapshot["parts"]["model"])


def test_overwrite_data_recognises_every_checkpoint_file_rumpy_writes(write_config, tmp_path):
    path = write_config(num_epochs=4, extra_training=POLICY + "\nweights_snapshots = true")
    assert train(path) == 0
    assert train(path, "--overwrite_data", "--num_epochs", "1") == 0
    assert files(tmp_path / "Results" / "tiny") == ["best.pt", "epoch_1.pt", "last.pt"]


def test_in_place_continue_from_an_earlier_epoch_removes_later_last_and_best(write_config,
                                                                             tmp_path):
    path = write_config(num_epochs=5, extra_training=POLICY + "\nweights_snapshots = true")
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    assert train(path, "--continue_from_epoch", "3", "--overwrite_data", "--num_epochs", "4") == 0
    assert files(node) == ["best.pt", "epoch_3.pt", "epoch_4.pt", "last.pt", "weights_1.pt",
                           "weights_2.pt"]
    assert epoch_of(node / "saved_models" / "last.pt") == 4
    assert epoch_of(node / "saved_models" / "best.pt") <= 4


# -- init_weights_path -------------------------------------------------------------------------

@pytest.mark.slow
def test_init_weights_from_a_node_epoch_and_from_a_weights_file(write_config, tmp_path, capsys):
    source = write_config("src.toml", experiment="src", extra_training='logging = "text"')
    assert train(source) == 0
    src = tmp_path / "Results" / "src"
    start_weights = load_checkpoint(src / "saved_models" / "epoch_2.pt")["parts"]["model"]
    # lr 0: after an epoch the weights are still the initial ones
    text = Path(write_config(num_epochs=1, extra_training=f'logging = "text"\n'
                             f'init_weights_path = "{src}"\ninit_weights_epoch = 2')).read_text()
    path = tmp_path / "init.toml"
    path.write_text(text.replace("lr = 1e-3", "lr = 0.0"))
    assert train(path) == 0
    node = tmp_path / "Results" / "tiny"
    trained = load_checkpoint(node / "saved_models" / "epoch_1.pt")["parts"]["model"]
    assert same_weights(trained, start_weights)
    lineage = json.loads((node / "lineage.json").read_text())["init_weights"]
    assert lineage["source"] == str(src) and lineage["epoch"] == 2 and lineage["skipped"] == []
    from rumpy.cli.main import main as rumpy_main
    assert rumpy_main(["tree", str(node)]) == 0
    assert f"init {src} @ 2" in capsys.readouterr().out

    # a plain weights file, as other trainers save it ({"params": state_dict}, DDP prefix)
    plain = tmp_path / "weights.pth"
    torch.save({"params": {f"module.{k}": v for k, v in start_weights.items()}}, plain)
    path.write_text(text.replace("lr = 1e-3", "lr = 0.0").replace(f'"{src}"', f'"{plain}"')
                    .replace('experiment = "tiny"', 'experiment = "plain"'))
    assert train(path) == 0
    trained = load_checkpoint(tmp_path / "Results" / "plain" / "saved_models" /
                              "epoch_1.pt")["parts"]["model"]
    assert same_weights(trained, start_weights)


def test_init_weights_that_do_not_fit_are_a_one_line_error_before_any_write(write_config,
                                                                            tmp_path):
    source = write_config("src.toml", experiment="src", num_epochs=1,
                          extra_training='logging = "text"')
    assert train(source) == 0
    src = tmp_path / "Results" / "src"
    path = write_config(num_epochs=1, params="num_features = 4\nnum_blocks = 1",
                        extra_training=f'init_weights_path = "{src}"\ninit_weights_epoch = 1')
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "training.init_weights_path" in line and "of another shape" in line
    assert "init_weights_strict = false" in line
    assert not (tmp_path / "Results" / "tiny").exists()
    # not strict: the weights that fit are loaded, the others listed in the lineage
    path.write_text(path.read_text().replace("init_weights_epoch = 1",
                                             "init_weights_epoch = 1\ninit_weights_strict = false"))
    assert train(path) == 0
    info = json.loads((tmp_path / "Results" / "tiny" / "lineage.json").read_text())["init_weights"]
    assert info["skipped"] and info["loaded"] >= 1
    base = path.read_text()
    for bad, message in ((tmp_path / "missing", "does not exist"),
                         (src, "no checkpoint of epoch 9")):
        path.write_text(base.replace(f'"{src}"', f'"{bad}"')
                        .replace("init_weights_epoch = 1", "init_weights_epoch = 9")
                        .replace('experiment = "tiny"', 'experiment = "other"'))
        with pytest.raises(ConfigError, match=message):
            prepare(load_config(path))
        assert not (tmp_path / "Results" / "other").exists()
