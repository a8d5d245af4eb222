"""The installed commands, run as a user runs them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from rumpy.data.images import read_rgb, write_png

BIN = Path(sys.executable).parent


def _run(*cmd: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_train_sisr_help_lists_overrides():
    proc = _run(str(BIN / "train_sisr"), "--help")
    assert proc.returncode == 0
    for flag in ("--parameters", "--gpu", "--sp_gpu", "--num_epochs", "--experiment_name",
                 "--seed", "--save_loc"):
        assert flag in proc.stdout


def test_prepare_data_command(tmp_path):
    hr = tmp_path / "hr"
    hr.mkdir()
    write_png(hr / "img.png", np.random.default_rng(0).integers(0, 255, (30, 33, 3), np.uint8))
    proc = _run(str(BIN / "rumpy"), "prepare-data", "--hr", str(hr), "--out", str(tmp_path / "lr"),
                "--scale", "3")
    assert proc.returncode == 0, proc.stderr
    assert read_rgb(tmp_path / "lr" / "imgx3.png").shape == (10, 11, 3)
    proc = _run(str(BIN / "rumpy"), "prepare-data", "--hr", str(tmp_path / "nope"), "--out",
                str(tmp_path / "x"), "--scale", "2")
    assert proc.returncode == 2 and "--hr: folder not found" in proc.stderr


def test_models_command_lists_registry():
    proc = _run(str(BIN / "rumpy"), "models")
    assert proc.returncode == 0
    from rumpy import catalog  # noqa: F401  (every task's models)
    from rumpy.models import MODELS
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == [n for n in MODELS for _ in MODELS.all(n)]
    assert {"cnn_regressor", "edsr", "han", "mlp", "qedsr", "qrcan", "rcan", "safmn", "san",
            "sftmd", "srcnn", "srmd", "vdsr", "qhan", "qsan", "rrdbnet", "vgg_discriminator",
            "unet_discriminator"} <= set(names)
    conditioned = {line.split()[0] for line in proc.stdout.splitlines()
                   if "+ degradation metadata" in line}
    assert conditioned == {n for n in names if getattr(MODELS.get(n), "takes_metadata", False)}
    assert {"qrcan", "qhan", "srmd"} <= conditioned


def test_train_sisr_end_to_end_as_subprocess(write_config, tmp_path):
    path = write_config(num_epochs=1)
    proc = _run(str(BIN / "train_sisr"), "--parameters", str(path), "--gpu", "off",
                "--experiment_name", "cli_run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "finished: best val-PSNR" in proc.stderr
    assert (tmp_path / "Results" / "cli_run" / "result_outputs" / "summary.csv").is_file()
    again = _run(str(BIN / "train_sisr"), "--parameters", str(path), "--experiment_name", "cli_run")
    assert again.returncode == 2 and "already exists" in again.stderr
