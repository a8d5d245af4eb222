"""Regenerates the golden files of tests/test_golden.py with the code checked out now.

They were made with commit bccf8ee (before the Task layer): sisr_summary.csv (3 epochs),
legacy_run/ (that run folder: config, status, summary and checkpoints, data paths templated),
sisr_continued_summary.csv (legacy_run continued in place to epoch 4) and sisr_fork_summary.csv
(a branch forked at epoch 2 with lr 5e-4, trained to epoch 4). Run: python tests/golden/make_golden.py
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import make_pairs  # noqa: E402
from rumpy.cli.train import main as train  # noqa: E402


def make_data(root: Path) -> dict[str, str]:
    train_lr, train_hr = make_pairs(root / "train", 2, 48, ["astronaut", "coffee"], 4)
    val_lr, val_hr = make_pairs(root / "val", 2, 40, ["chelsea"], 2, naming="same")
    return {"TRAIN_LR": str(train_lr), "TRAIN_HR": str(train_hr), "VAL_LR": str(val_lr),
            "VAL_HR": str(val_hr), "SAVE_LOC": str(root / "Results"), "CACHE_DIR": str(root / "cache")}


def render(values: dict[str, str], num_epochs: int, lr: str = "1e-3") -> str:
    text = (HERE / "sisr.toml.in").read_text()
    for key, value in {**values, "NUM_EPOCHS": str(num_epochs), "LR": lr}.items():
        text = text.replace(f"@{key}@", value)
    return text


def template(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(value, f"@{key}@")
    return text


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        values = make_data(root)
        cfg = root / "golden.toml"
        cfg.write_text(render(values, 3))
        assert train(["--parameters", str(cfg)]) == 0
        run = root / "Results" / "golden"
        shutil.copy(run / "result_outputs" / "summary.csv", HERE / "sisr_summary.csv")
        legacy = HERE / "legacy_run"
        shutil.rmtree(legacy, ignore_errors=True)
        (legacy / "result_outputs").mkdir(parents=True)
        (legacy / "saved_models").mkdir()
        (legacy / "config.toml").write_text(template((run / "config.toml").read_text(), values))
        shutil.copy(run / "status.json", legacy / "status.json")
        shutil.copy(run / "result_outputs" / "summary.csv", legacy / "result_outputs")
        for epoch in (2, 3):
            for suffix in ("", ".sha256"):
                shutil.copy(run / "saved_models" / f"epoch_{epoch}.pt{suffix}", legacy / "saved_models")

        cfg.write_text(render(values, 4))
        assert train(["--parameters", str(cfg), "--continue_from_epoch", "last"]) == 0
        shutil.copy(run / "result_outputs" / "summary.csv", HERE / "sisr_continued_summary.csv")
        fork = root / "fork.toml"
        fork.write_text(render(values, 4, lr="5e-4"))
        assert train(["--parameters", str(fork), "--continue_from_epoch", "2", "--new_branch",
                      "--new_branch_name", "lr_half"]) == 0
        shutil.copy(run / "lr_half" / "result_outputs" / "summary.csv",
                    HERE / "sisr_fork_summary.csv")


if __name__ == "__main__":
    main()
