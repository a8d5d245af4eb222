"""What a new user tripped over (issue 12, section 7): the README's fork example as written and
the save location in the error when a continue finds no run, Aim's force-release warning, metric
names in plot and export, LR/HR in the scale-mismatch error, the '..' branch name, did-you-mean
hints, labelled sample strips and the bicubic line in the compare plot."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_pairs, rows
from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.registry import did_you_mean
from rumpy.core.columns import find_column
from rumpy.results.compare import compare_figure
from rumpy.results.export import best_table, epochs_table
from rumpy.results.samples import LABEL, sample_strip
from rumpy.tasks.sisr_eval import Sample
from rumpy.training.setup import prepare
from rumpy.utils.names import name_problem


@pytest.mark.parametrize("typo, options, expected", [
    ("num_epoch", ["num_epochs", "eval_frequency"], "num_epochs"),
    ("eval_frequncy", ["eval_frequency", "num_epochs"], "eval_frequency"),
    ("save_checkpoint_freq", ["save_checkpoint_frequency", "seed"], "save_checkpoint_frequency"),
    ("early_stoping_patience", ["early_stopping_patience"], "early_stopping_patience"),
    ("best_metric", ["best_load_metric", "metrics"], "best_load_metric"),
    ("trainin", ["training", "model"], "training"),
    ("lr_dir", ["lr", "hr"], "lr"),
    ("of", ["off", "single", "multiple"], "off"),
    ("sigma_xx", ["sigma_x", "sigma_y"], "sigma_x"),
    ("training.sed", ["training.seed", "model.name"], "training.seed"),
    ("tensorbord", ["aim", "tensorboard"], "tensorboard"),
    ("optimiser", ["optimizer", "scheduler"], "optimizer"),
    # unrelated words that only share a word or a prefix with an option: no hint
    ("video_frequency", ["eval_frequency", "save_checkpoint_frequency"], None),
    ("warmup_metric", ["best_load_metric", "early_stopping_metric"], None),
    ("lr_decay", ["lr", "hr"], None),
    ("lr_min", ["lr", "loss"], None),
    ("gpu_id", ["gpu", "seed"], None),
    ("aim", ["amp", "seed"], None),
    ("drop_last_training_batch", ["limit_train_batches"], None),
    ("metrics_list", ["metric_channel"], None),
])
def test_did_you_mean_suggests_only_real_typos(typo, options, expected):
    hint = did_you_mean(typo, options)
    assert hint == (f"; did you mean '{expected}'?" if expected else ""), hint


@pytest.mark.parametrize("name", ["..", "."])
def test_dot_branch_names_say_what_is_not_allowed(name):
    problem = name_problem(name, branch=True)
    assert "'.' and '..' are not allowed" in problem and "starting with '.'" in problem
    assert "letters, digits" not in problem
    assert "not starting with '.'" in name_problem(".hidden", branch=True)
    assert "starts with a letter or digit" in name_problem("-x", branch=True)


def test_scale_mismatch_says_which_file_is_lr_and_which_hr(write_config, tmp_path):
    lr3, hr3 = make_pairs(tmp_path / "x3", 3, 48, ["astronaut"], 1, naming="same")
    text = write_config().read_text()
    text = re.sub(r'lr = ".*?train/LR_x2"', f'lr = "{lr3}"', text)
    text = re.sub(r'hr = ".*?train/HR"', f'hr = "{hr3}"', text)
    with pytest.raises(ConfigError) as info:
        prepare(load_config(write_config("x3.toml", text=text)))
    assert f"LR {lr3 / '0001.png'} (16x16) and HR {hr3 / '0001.png'} (48x48)" in str(info.value)


@pytest.mark.slow
def test_fork_as_the_readme_shows_and_a_copy_elsewhere_names_the_save_location(
        write_config, tmp_path, caplog):
    """README: the fork with an override, then a branch of the branch at its best."""
    path = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    assert train_main(["--parameters", str(path), "model.internal_params.lr=5e-4",
                       "--continue_from_epoch", "1", "--new_branch", "--new_branch_name",
                       "lr_half"]) == 0
    assert train_main(["--parameters", str(path), "model.internal_params.lr=5e-4",
                       "--branch_root", "lr_half", "--continue_from_epoch", "best",
                       "--new_branch", "--num_epochs", "3"]) == 0
    root = tmp_path / "Results" / "tiny"
    assert [r["inherited"] for r in rows(root / "lr_half")] == ["1", "0"]
    assert len([p for p in (root / "lr_half").iterdir() if p.name.startswith("branch_epoch_")]) == 1
    # the copy saved one folder up: its relative save location points elsewhere, and says so
    copy = tmp_path / "elsewhere" / "copy.toml"
    copy.parent.mkdir()
    copy.write_text(path.read_text().replace(f'experiment_save_loc = "{tmp_path / "Results"}"',
                                             'experiment_save_loc = "../Results_x"'))
    caplog.clear()
    assert train_main(["--parameters", str(copy), "--continue_from_epoch", "1",
                       "--new_branch"]) == 2
    message = caplog.records[-1].getMessage()
    assert f"there is no run at {tmp_path / 'Results_x' / 'tiny'}" in message
    assert f"experiment_save_loc resolved to {tmp_path / 'Results_x'}, set by {copy}" in message
    assert not (tmp_path / "Results_x").exists()


def test_in_place_continue_does_not_print_aims_force_release(write_config, tmp_path, capfd,
                                                             caplog):
    path = write_config(num_epochs=1, aim=True, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                           "--num_epochs", "2"]) == 0
    captured = capfd.readouterr()
    assert "Force-releasing" not in captured.out + captured.err + caplog.text
    assert caplog.text.count("reopened (its lock from the previous process released") == 1
    assert len(rows(tmp_path / "Results" / "tiny")) == 2


def test_metric_names_resolve_alike_in_plot_and_export_and_errors_list_columns(
        write_config, tmp_path, caplog):
    path = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    root = tmp_path / "Results" / "tiny"
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "1", "--new_branch",
                       "--new_branch_name", "b", "--num_epochs", "3"]) == 0
    columns = list(rows(root)[0])
    for name in ("PSNR", "val-PSNR", "psnr"):
        assert find_column(name, columns) == "val-PSNR"
        assert list(best_table(epochs_table(root), name)["val-PSNR"].notna()) == [True, True]
    out = tmp_path / "plots" / "psnr.png"
    assert rumpy_main(["plot", str(root), "--metric", "PSNR", "-o", str(out)]) == 0
    assert Image.open(out).format == "PNG"
    caplog.clear()
    assert rumpy_main(["plot", str(root), "--metric", "PSNX", "-o", str(out)]) == 2
    assert rumpy_main(["export", str(root), "--best", "PSNX"]) == 2
    for record in caplog.records:
        assert "no column 'PSNX'; did you mean 'val-PSNR'? (columns: train-loss, " \
               "learning-rate, val-loss, val-PSNR, val-SSIM, epoch-time, data-wait)" in record.getMessage()
    # the compare plot has the bicubic baseline, as the single-node plots do
    fig, drawn = compare_figure(root, "PSNR")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    baseline = rows_of(root / "result_outputs" / "bicubic_baseline.csv")[0]
    assert drawn == [".", "b"]
    assert f"bicubic {float(baseline['PSNR']):.4f}" in labels
    fig, _ = compare_figure(root, "train-loss")  # no baseline for the training loss
    assert not any(label.startswith("bicubic") for label in
                   (line.get_label() for line in fig.axes[0].get_lines()))


def rows_of(path: Path) -> list[dict]:
    import csv
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _band_has_text(strip: Image.Image, left: int, width: int) -> bool:
    band = np.asarray(strip)[:LABEL, left: left + width]
    return bool((band < 128).any())


def test_sample_strips_label_their_panels(write_config, tmp_path):
    path = write_config(num_epochs=1, extra_training='logging = "visual"')
    assert train_main(["--parameters", str(path)]) == 0
    out = tmp_path / "Results" / "tiny" / "result_outputs"
    strip = Image.open(next((out / "epoch_1_samples").glob("chelsea_*.png"))).convert("RGB")
    assert strip.size == (3 * 40 + 2 * 4, 40 + LABEL)
    assert all(_band_has_text(strip, x, 40) for x in (0, 44, 88))
    # PSNR on the output's label when it is known, fitted to the panel
    big = torch.zeros(3, 120, 200, dtype=torch.uint8)
    strip = sample_strip(Sample("x", big, big, big, psnr=27.125))
    assert strip.size == (3 * 200 + 8, 120 + LABEL)
    assert all(_band_has_text(strip, x, 200) for x in (0, 204, 408))
    without = sample_strip(Sample("x", big, big, big))
    assert np.asarray(without)[:LABEL, 204:404].tobytes() != \
        np.asarray(strip)[:LABEL, 204:404].tobytes()
