"""SISR on the Task layer reproduces, number for number, what the code before it produced
(tests/golden/, made by make_golden.py at commit bccf8ee), and that code's run folders and
checkpoints (format 1) still continue and fork exactly."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from rumpy.cli.train import main as train_main
from rumpy.results.summary import TIMING_COLUMNS
from rumpy.training.checkpoint import load_checkpoint

GOLDEN = Path(__file__).parent / "golden"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


@pytest.fixture
def golden(tmp_path, tiny_sets):
    values = {"TRAIN_LR": str(tiny_sets["train_lr"]), "TRAIN_HR": str(tiny_sets["train_hr"]),
              "VAL_LR": str(tiny_sets["val_lr"]), "VAL_HR": str(tiny_sets["val_hr"]),
              "SAVE_LOC": str(tmp_path / "Results"), "CACHE_DIR": str(tmp_path / "cache")}

    def fill(text: str, **extra) -> str:
        for key, value in {**values, **extra}.items():
            text = text.replace(f"@{key}@", value)
        return text

    def config(name: str, num_epochs: int, lr: str = "1e-3") -> Path:
        path = tmp_path / name
        path.write_text(fill((GOLDEN / "sisr.toml.in").read_text(), NUM_EPOCHS=str(num_epochs), LR=lr))
        return path

    def legacy_run() -> Path:
        run = tmp_path / "Results" / "golden"
        shutil.copytree(GOLDEN / "legacy_run", run)
        config_file = run / "config.toml"
        config_file.write_text(fill(config_file.read_text()))
        return run

    return config, legacy_run


def test_sisr_reproduces_the_pre_task_layer_summary(golden, tmp_path):
    config, _ = golden
    assert train_main(["--parameters", str(config("g.toml", 3))]) == 0
    run = tmp_path / "Results" / "golden"
    assert _rows(run / "result_outputs" / "summary.csv") == _rows(GOLDEN / "sisr_summary.csv")


def test_legacy_run_folder_continues_exactly(golden, tmp_path):
    config, legacy_run = golden
    run = legacy_run()
    assert load_checkpoint(run / "saved_models" / "epoch_3.pt")["format"] == 2  # upgraded on load
    assert train_main(["--parameters", str(config("g.toml", 4)), "--continue_from_epoch",
                       "last"]) == 0
    assert _rows(run / "result_outputs" / "summary.csv") == \
        _rows(GOLDEN / "sisr_continued_summary.csv")


def test_legacy_checkpoint_forks_exactly(golden, tmp_path):
    config, legacy_run = golden
    run = legacy_run()
    assert train_main(["--parameters", str(config("fork.toml", 4, lr="5e-4")),
                       "--continue_from_epoch", "2", "--new_branch", "--new_branch_name",
                       "lr_half"]) == 0
    assert _rows(run / "lr_half" / "result_outputs" / "summary.csv") == \
        _rows(GOLDEN / "sisr_fork_summary.csv")
