"""Export and comparison across a real three-node result tree."""
from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.training.progress import Progress

BIN = Path(sys.executable).parent


@pytest.fixture
def three_nodes(write_config, tmp_path) -> Path:
    path = write_config(num_epochs=3)
    assert train_main(["--parameters", str(path)]) == 0
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "2", "--new_branch",
                       "--new_branch_name", "a", "--num_epochs", "4"]) == 0
    assert train_main(["--parameters", str(path), "--branch_root", "a", "--continue_from_epoch",
                       "3", "--new_branch", "--new_branch_name", "b", "--num_epochs", "5"]) == 0
    return tmp_path / "Results"


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_wide_has_a_row_per_node_and_epoch(three_nodes, tmp_path):
    out = tmp_path / "all.csv"
    assert rumpy_main(["export", str(three_nodes), "-o", str(out)]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns[:6]) == ["experiment", "branch", "parent", "fork_epoch", "inherited",
                                       "epoch"]
    got = [(r.branch, r.parent, str(r.fork_epoch), bool(r.inherited), int(r.epoch))
           for r in table.itertuples()]
    assert got == [(".", "", "", False, 1), (".", "", "", False, 2), (".", "", "", False, 3),
                   ("a", ".", "2", True, 1), ("a", ".", "2", True, 2), ("a", ".", "2", False, 3),
                   ("a", ".", "2", False, 4),
                   ("a/b", "a", "3", True, 1), ("a/b", "a", "3", True, 2), ("a/b", "a", "3", True, 3),
                   ("a/b", "a", "3", False, 4), ("a/b", "a", "3", False, 5)]
    assert set(table["experiment"]) == {"tiny"}
    b_rows = _csv(three_nodes / "tiny" / "a" / "b" / "result_outputs" / "summary.csv")
    exported = table[table["branch"] == "a/b"]
    assert [float(v) for v in exported["val-PSNR"]] == [float(r["val-PSNR"]) for r in b_rows]


def test_export_long_best_and_per_image(three_nodes, tmp_path):
    long_csv = tmp_path / "long.csv"
    assert rumpy_main(["export", str(three_nodes / "tiny"), "--format", "long", "-o",
                       str(long_csv)]) == 0
    long = pd.read_csv(long_csv)
    assert set(long["metric"]) == {"train-loss", "learning-rate", "val-loss", "val-PSNR",
                                   "val-SSIM", "epoch-time", "data-wait"}
    assert len(long) == 12 * 7
    best_csv = tmp_path / "best.csv"
    assert rumpy_main(["export", str(three_nodes), "--best", "PSNR", "-o", str(best_csv)]) == 0
    best = pd.read_csv(best_csv, keep_default_na=False)
    assert list(best["branch"]) == [".", "a", "a/b"]
    for row in best.itertuples():
        node = three_nodes / "tiny" / ("" if row.branch == "." else row.branch)
        own = [r for r in _csv(node / "result_outputs" / "summary.csv") if r["inherited"] == "0"]
        top = max(own, key=lambda r: float(r["val-PSNR"]))
        assert row.best_epoch == int(top["epoch"])
    per_csv = tmp_path / "per.csv"
    assert rumpy_main(["export", str(three_nodes), "--per-image", "2", "-o", str(per_csv)]) == 0
    per = pd.read_csv(per_csv, keep_default_na=False)
    # epoch 2 was trained by the root only: every node reports the root's per-image values
    assert list(per["branch"]) == [".", ".", "a", "a", "a/b", "a/b"]
    assert list(per["image"].astype(str).str.zfill(4)) == ["0001", "0002"] * 3
    assert per["PSNR"].nunique() == 2


def test_export_errors_are_one_line(tmp_path):
    proc = subprocess.run([str(BIN / "rumpy"), "export", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "no run folders" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plot_overlays_nodes(three_nodes, tmp_path):
    out = tmp_path / "cmp.png"
    assert rumpy_main(["plot", str(three_nodes / "tiny"), "--metric", "val-PSNR", "-o",
                       str(out)]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 400
    assert rumpy_main(["plot", str(three_nodes / "tiny"), "--nodes", ".", "nope", "-o",
                       str(out)]) == 2


def test_progress_logs_periodic_lines_when_not_a_terminal(caplog):
    progress = Progress(num_epochs=2, start_epoch=0, interval=0.0, terminal=False, batch_size=4)
    progress.start_epoch(1, 0, 3)
    with caplog.at_level(logging.INFO, logger="rumpy"):
        for step in range(1, 4):
            progress.step(step, torch.tensor(0.5 * step, dtype=torch.float64))
    progress.end_epoch({"epoch": 1, "val-PSNR": 30.0})
    progress.close()
    assert "epoch 1/2: batch 3/3, running loss 0.50000" in caplog.text
    assert "batches/s" in caplog.text and "samples/s" in caplog.text and "ETA" in caplog.text
    assert caplog.text.count("running loss") == 3
