"""SISR on the Task layer reproduces, number for number, what the code before it produced
(tests/golden/, made by make_golden.py at commit bccf8ee), and that code's run folders and
checkpoints (format 1) still continue and fork exactly.

The stored numbers were made on one processor; float kernels differ in their last bits between
processor generations (AVX2 vs AVX-512: val-PSNR 18.014133536 vs 18.014136649), so values are
compared to RELATIVE = 1e-5 and everything else (epochs, columns, row count) exactly. Bitwise
equality is checked where both sides are computed on the same machine (continue vs an
uninterrupted run: test_training, test_hardening)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from rumpy.cli.train import main as train_main
from rumpy.core.summary import TIMING_COLUMNS
from rumpy.core.checkpoint import load_checkpoint

GOLDEN = Path(__file__).parent / "golden"


RELATIVE = 1e-5


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _assert_matches_golden(path: Path, golden: Path) -> None:
    got, want = _rows(path), _rows(golden)
    assert [list(r) for r in got] == [list(r) for r in want]  # same columns, same rows
    for g, w in zip(got, want):
        for key, value in w.items():
            a, b = _number(g[key]), _number(value)
            if a is None or b is None or value == g[key]:
                assert g[key] == value, (key, g[key], value)
            else:
                assert a == pytest.approx(b, rel=RELATIVE, abs=1e-12), (g["epoch"], key, a, b)


def test_tolerance_still_tells_a_changed_result_apart(tmp_path):
    """The tolerance admits last-bit differences, not a different training."""
    rows = (GOLDEN / "sisr_summary.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("val-PSNR")
    changed = rows[1].split(",")
    changed[column] = repr(float(changed[column]) * (1 + 1e-4))
    (tmp_path / "s.csv").write_text("\n".join([rows[0], ",".join(changed), *rows[2:]]) + "\n")
    with pytest.raises(AssertionError):
        _assert_matches_golden(tmp_path / "s.csv", GOLDEN / "sisr_summary.csv")
    _assert_matches_golden(GOLDEN / "sisr_summary.csv", GOLDEN / "sisr_summary.csv")


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
    _assert_matches_golden(run / "result_outputs" / "summary.csv", GOLDEN / "sisr_summary.csv")


def test_legacy_run_folder_continues_exactly(golden, tmp_path):
    config, legacy_run = golden
    run = legacy_run()
    assert load_checkpoint(run / "saved_models" / "epoch_3.pt")["format"] == 2  # upgraded on load
    assert train_main(["--parameters", str(config("g.toml", 4)), "--continue_from_epoch",
                       "last"]) == 0
    _assert_matches_golden(run / "result_outputs" / "summary.csv",
                           GOLDEN / "sisr_continued_summary.csv")


def test_legacy_checkpoint_forks_exactly(golden, tmp_path):
    config, legacy_run = golden
    run = legacy_run()
    assert train_main(["--parameters", str(config("fork.toml", 4, lr="5e-4")),
                       "--continue_from_epoch", "2", "--new_branch", "--new_branch_name",
                       "lr_half"]) == 0
    _assert_matches_golden(run / "lr_half" / "result_outputs" / "summary.csv",
                           GOLDEN / "sisr_fork_summary.csv")
