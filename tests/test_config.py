"""Bad input gets a one-line error naming file, key path and expectation, before anything is
written; good input becomes a typed config with defaults and resolved paths."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.training.setup import prepare


def _fails(path: Path, *extra: str) -> str:
    """Run train_sisr in-process and return its error, asserting nothing was written."""
    cfg_results = path.parent / "Results"
    with pytest.raises(ConfigError) as info:
        cfg = load_config(path)
        prepare(cfg)
    assert not cfg_results.exists(), "a run folder was created for bad input"
    return str(info.value)


def test_typo_names_file_key_and_suggestion(write_config):
    path = write_config(extra_training="num_epoch = 3")
    msg = _fails(path)
    assert msg.startswith(f"{path}: training.num_epoch: unknown key")
    assert "did you mean 'num_epochs'?" in msg
    assert "\n" not in msg


def test_typo_in_dataset_and_model_params(write_config):
    msg = _fails(write_config(extra_data="[data.training_sets.extra]\nhr_dir = 'x'"))
    assert "data.training_sets.extra.hr_dir: unknown key" in msg and "'hr'" in msg
    msg = _fails(write_config(params="num_feature = 8"))
    assert "model.internal_params.num_feature" in msg and "did you mean 'num_features'?" in msg


def test_wrong_type_and_value(write_config):
    assert "training.num_epochs: expected an integer, got a string '3'" in _fails(
        write_config(text=write_config().read_text().replace("num_epochs = 2", 'num_epochs = "3"')))
    msg = _fails(write_config(text=write_config().read_text().replace('gpu = "off"', 'gpu = "of"')))
    assert "training.gpu: expected one of 'off', 'single', 'multiple', got 'of'" in msg
    assert "did you mean 'off'" in msg
    msg = _fails(write_config(text=write_config().read_text().replace("batch_size = 4",
                                                                      "batch_size = 0")))
    assert "data.batch_size: expected an integer >= 1, got 0" in msg
    msg = _fails(write_config(params="num_features = 8.5"))
    assert "model.internal_params.num_features: expected int for edsr, got 8.5" in msg


def test_unknown_model_lists_registered(write_config):
    msg = _fails(write_config(model="edsrr"))
    assert "model.name: unknown model 'edsrr'; did you mean 'edsr'?" in msg
    from rumpy.models import MODELS
    assert f"sisr models: {', '.join(MODELS.names(('sisr', 'image')))})" in msg
    assert "sisr models: contrastiveblindqrcan, dan, edsr, elan, han, " in msg


def test_unknown_optimizer_scheduler_metric_loss(write_config):
    assert "model.internal_params.optimizer: unknown optimizer 'adan'" in _fails(
        write_config(extra_params='optimizer = "adan"'))
    assert "model.internal_params.scheduler_params.milestone: not a parameter of MultiStepLR" in _fails(
        write_config(extra_params='scheduler = "multi_step_lr"\nscheduler_params = {milestone = [1]}'))
    assert "model.internal_params.scheduler_params.milestones: missing" in _fails(
        write_config(extra_params='scheduler = "multi_step_lr"'))
    assert "training.metrics: unknown metric 'PNSR'" in _fails(
        write_config(text=write_config().read_text().replace('"PSNR", "SSIM"', '"PNSR"')))
    assert "model.internal_params.optimizer_params.beta: not a parameter of Adam; did you mean 'betas'?" \
        in _fails(write_config(extra_params="optimizer_params = {beta = [0.9, 0.99]}"))


def test_unsupported_scale(write_config):
    text = write_config().read_text().replace("scale = 2", "scale = 5")
    assert "model.internal_params.scale: edsr supports scales 2, 3, 4, 8, got 5" in _fails(
        write_config(text=text))


def test_missing_folder(write_config, tmp_path):
    text = write_config().read_text()
    text = re.sub(r'hr = ".*?train/HR"', f'hr = "{tmp_path / "nowhere"}"', text)
    msg = _fails(write_config(text=text))
    assert f"data.training_sets.tiles.hr: folder not found: {tmp_path / 'nowhere'}" in msg


def test_empty_dataset(write_config, tmp_path):
    empty_lr, empty_hr = tmp_path / "elr", tmp_path / "ehr"
    empty_lr.mkdir()
    empty_hr.mkdir()
    (empty_hr / "notes.txt").write_text("not an image")
    text = write_config().read_text()
    text = re.sub(r'lr = ".*?val/LR_x2"', f'lr = "{empty_lr}"', text)
    text = re.sub(r'hr = ".*?val/HR"', f'hr = "{empty_hr}"', text)
    assert "data.eval_sets.chelsea: no LR/HR image pairs" in _fails(write_config(text=text))


def test_size_mismatch(write_config, tiny_sets, tmp_path):
    """LR images made at x3 listed as an x2 set: the error names the files and expected size."""
    from conftest import make_pairs
    lr3, hr3 = make_pairs(tmp_path / "x3", 3, 48, ["astronaut"], 2, naming="same")
    text = write_config().read_text()
    text = re.sub(r'lr = ".*?train/LR_x2"', f'lr = "{lr3}"', text)
    text = re.sub(r'hr = ".*?train/HR"', f'hr = "{hr3}"', text)
    msg = _fails(write_config(text=text))
    assert f"data.training_sets.tiles: LR {lr3 / '0001.png'} (16x16) and HR {hr3 / '0001.png'} " \
           f"(48x48): expected HR = LR x 2 (32x32)" in msg


def test_crop_larger_than_images(write_config):
    text = write_config().read_text().replace("crop = 12", "crop = 30")
    assert "data.training_sets.tiles.crop: expected at most 24" in _fails(write_config(text=text))


def test_invalid_toml_syntax(write_config):
    path = write_config(text="experiment = \n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: invalid TOML"):
        load_config(path)


def test_relative_paths_resolve_against_toml_folder(tmp_path, tiny_sets):
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "rel.toml"
    path.write_text(
        'experiment = "rel"\nexperiment_save_loc = "../out"\n[model]\nname = "edsr"\n'
        '[data.training_sets.a]\nlr = "../data/lr"\nhr = "../data/hr"\n')
    cfg = load_config(path)
    assert cfg.experiment_save_loc == str(tmp_path / "out")
    assert cfg.data.training_sets["a"].lr == str(tmp_path / "data" / "lr")
    # defaults are filled in, with the section name as the set's name
    assert cfg.training.num_epochs == 100 and cfg.data.batch_size == 16
    assert cfg.data.training_sets["a"].name == "a" and cfg.data.training_sets["a"].crop == 0


def test_cli_overrides_only_when_given(write_config, tmp_path):
    path = write_config()
    cfg = load_config(path, {"num_epochs": None, "seed": 11, "gpu": None, "save_loc": "rel_out"})
    assert cfg.training.num_epochs == 2 and cfg.training.seed == 11
    assert cfg.experiment_save_loc == str(Path.cwd() / "rel_out")


def test_existing_run_folder_is_refused(write_config, tmp_path):
    path = write_config()
    assert train_main(["--parameters", str(path)]) == 0
    summary = tmp_path / "Results" / "tiny" / "result_outputs" / "summary.csv"
    before = summary.read_bytes()
    assert train_main(["--parameters", str(path)]) == 2
    assert summary.read_bytes() == before


def test_cli_error_is_one_line_without_traceback(write_config):
    path = write_config(extra_training="num_epoch = 3")
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "training.num_epoch: unknown key; did you mean 'num_epochs'?" in lines[0]


def test_gpu_single_without_cuda_is_a_clear_error(write_config):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    msg = _fails(write_config(text=write_config().read_text().replace('gpu = "off"', 'gpu = "single"')))
    assert "training.gpu: gpu = 'single' but CUDA is not available" in msg
    multiple = write_config(text=write_config().read_text().replace('gpu = "off"',
                                                                     'gpu = "multiple"'))
    assert "one process cannot use several GPUs" in _fails(multiple)
    # train_sisr would relaunch itself through torchrun, one process per GPU: there are none
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters",
                           str(multiple)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "training.gpu: gpu = 'multiple' but CUDA is not available" in proc.stderr


def test_resolved_config_has_every_default(write_config, tmp_path):
    path = write_config()
    assert train_main(["--parameters", str(path)]) == 0
    resolved = tomllib.loads((tmp_path / "Results" / "tiny" / "config.toml").read_text())
    assert resolved["training"]["eval_frequency"] == 1
    assert resolved["model"]["internal_params"]["res_scale"] == 0.1  # architecture default
    assert resolved["data"]["eval_sets"]["chelsea"]["crop"] == 0
    assert Path(resolved["data"]["training_sets"]["tiles"]["lr"]).is_absolute()


def test_sixteen_bit_and_unreadable_images_are_named(write_config, tmp_path):
    from PIL import Image
    lr, hr = tmp_path / "lr16", tmp_path / "hr16"
    lr.mkdir()
    hr.mkdir()
    Image.new("I;16", (8, 8)).save(lr / "a.png")
    Image.new("I;16", (16, 16)).save(hr / "a.png")
    text = write_config().read_text()
    text = re.sub(r'lr = ".*?val/LR_x2"', f'lr = "{lr}"', text)
    text = re.sub(r'hr = ".*?val/HR"', f'hr = "{hr}"', text)
    msg = _fails(write_config(text=text))
    assert "data.eval_sets.chelsea: cannot use image: a.png is a I;16 image" in msg
    (hr / "a.png").write_bytes(b"not a png")
    assert "data.eval_sets.chelsea: cannot use image" in _fails(write_config(text=text))


def test_absent_sections_get_the_task_defaults(tmp_path):
    path = tmp_path / "minimal.toml"
    path.write_text('experiment = "m"\n[model]\nname = "edsr"\n'
                    '[data.training_sets.quickstart]\n')
    cfg = load_config(path)
    assert cfg.scale == 4 and cfg.model.internal_params.loss == "l1"
    assert cfg.training.metrics == ["PSNR", "SSIM"] and cfg.training.metric_channel == "y"
    assert cfg.data.normalize_targets is None  # a regression key: absent from an SR config
    path.write_text('experiment = "m"\ntask = "regression"\n[model]\nname = "mlp"\n'
                    '[data.training_sets.t]\nfile = "x.npz"\n')
    cfg = load_config(path)
    assert cfg.scale is None and cfg.model.internal_params.loss == "mse"
    assert cfg.training.best_load_metric == "val-RMSE" and cfg.data.normalize_targets is True


def test_every_problem_of_a_config_is_reported_at_once(tmp_path):
    path = tmp_path / "many.toml"
    path.write_text('experiment = "m"\n[training]\nnum_epochz = 3\nseed = -1\ngpu = "of"\n'
                    '[model]\nname = "edsr"\n[model.internal_params]\nlr = "fast"\n'
                    '[data]\nbatch_size = 0\n[data.training_sets.a]\ntype = "pared"\n'
                    '[data.eval_sets.b]\ncutof = 2\n')
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "(7 problems)"
    keys = [line.split(": ")[1] for line in lines[:-1]]
    assert keys == ["training.num_epochz", "training.seed", "training.gpu",
                    "model.internal_params.lr", "data.batch_size", "data.training_sets.a.type",
                    "data.eval_sets.b.cutof"]
    assert all(str(path) in line for line in lines[:-1])
    # an unknown model is one of them
    path.write_text(path.read_text().replace('name = "edsr"', 'name = "edsrr"'))
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "(8 problems)"
    assert "model.name: unknown model 'edsrr'; did you mean 'edsr'?" in proc.stderr
    assert not (tmp_path / "Results").exists()
