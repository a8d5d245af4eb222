"""Layered configs (`defaults`, --cfg-default), `section.key=value` overrides and placeholders in
run folder names: how they resolve, and every error path as one line naming its source."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_toml
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError


@pytest.fixture
def layered(tmp_path, tiny_sets):
    """base/base.toml holds the whole tiny config; exp/exp.toml starts from it and changes two
    keys; relative data paths in base.toml point next to base.toml."""
    base_dir, exp_dir = tmp_path / "base", tmp_path / "exp"
    base_dir.mkdir()
    exp_dir.mkdir()
    text = tiny_toml(tiny_sets, tmp_path / "Results", tmp_path / "cache", experiment="layered")
    (base_dir / "sets").symlink_to(tiny_sets["train_lr"].parent)
    text = text.replace(f'lr = "{tiny_sets["train_lr"]}"',
                        f'lr = "sets/{tiny_sets["train_lr"].name}"')
    (base_dir / "base.toml").write_text(text)
    (exp_dir / "exp.toml").write_text('defaults = ["../base/base.toml"]\n[training]\nnum_epochs = 1\n'
                                      'metrics = ["PSNR"]\n[model.internal_params]\nlr = 5e-4\n')
    return base_dir / "base.toml", exp_dir / "exp.toml"


def test_defaults_chain_merges_deeply_later_wins_lists_replaced(layered, tiny_sets, tmp_path):
    base, exp = layered
    cfg = load_config(exp)
    assert cfg.training.num_epochs == 1 and cfg.model.internal_params.lr == 5e-4
    assert cfg.training.metrics == ["PSNR"]          # a list is replaced, not appended to
    assert cfg.model.internal_params.arch == {"num_features": 8, "num_blocks": 1}  # kept from base
    # a relative path resolves against the file that set it
    assert Path(cfg.data.training_sets["tiles"].lr) == (base.parent / "sets" /
                                                        tiny_sets["train_lr"].name).resolve()
    # --cfg-default goes beneath the whole chain; the file's own keys still win
    low = tmp_path / "low.toml"
    low.write_text("[training]\nnum_epochs = 9\neval_frequency = 2\n")
    cfg = load_config(exp, cfg_defaults=(low,))
    assert cfg.training.num_epochs == 1 and cfg.training.eval_frequency == 2
    assert train_main(["--parameters", str(exp), "--cfg-default", str(low),
                       "training.seed=195"]) == 0
    config = (tmp_path / "Results" / "layered" / "config.toml").read_text()
    assert config.startswith(f"# composed from (later wins): {low} < {base} < {exp} < "
                             f"override training.seed=195\n")
    assert "seed = 195" in config
    # the stored config stands alone: continuing from it needs none of the layers
    (tmp_path / "low.toml").unlink()
    assert train_main(["--parameters", str(tmp_path / "Results" / "layered" / "config.toml"),
                       "--continue_from_epoch", "last", "--num_epochs", "2"]) == 0


def test_overrides_are_typed_like_the_toml(write_config):
    path = write_config()
    cfg = load_config(path, key_overrides=(
        "training.seed=195", "model.internal_params.lr=2e-4", "model.internal_params.num_blocks=2",
        "training.logging=text", 'training.metrics=["SSIM"]', "data.training_sets.tiles.crop=8",
        "training.trackers=[]"))
    assert cfg.training.seed == 195 and cfg.model.internal_params.lr == 2e-4
    assert cfg.model.internal_params.arch["num_blocks"] == 2
    assert cfg.training.logging == "text" and cfg.training.metrics == ["SSIM"]
    assert cfg.data.training_sets["tiles"].crop == 8 and cfg.training.trackers == []
    # a flag and an override of the same key: the override is the later, explicit one
    cfg = load_config(path, {"seed": 7}, key_overrides=("training.seed=8",))
    assert cfg.training.seed == 8


@pytest.mark.parametrize("override, message", [
    ("training.num_epochz=3", "override training.num_epochz=3: training.num_epochz: unknown key; "
                              "did you mean 'num_epochs'?"),
    ("training.num_epochs=three", "override training.num_epochs=three: training.num_epochs: "
                                  "expected an integer, got a string 'three'"),
    ("training.num_epochs", "override training.num_epochs: expected section.key=value"),
    ("=3", "override =3: expected section.key=value"),
    ("training..seed=1", "expected section.key=value"),
    ("trainin.seed=1", "override trainin.seed=1: trainin: unknown key; did you mean 'training'?"),
])
def test_bad_overrides_are_one_line_errors_naming_the_override(write_config, override, message):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(), key_overrides=(override,))
    assert message in str(info.value)


def test_a_bad_override_on_the_command_line_is_one_line_and_writes_nothing(write_config,
                                                                          tmp_path):
    path = write_config()
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                           "training.seed=1", "training.num_epochz=3"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "override training.num_epochz=3: training.num_epochz: unknown key; did you mean "
        "'num_epochs'? (allowed: " + proc.stderr.split("(allowed: ")[1].strip())
    assert not (tmp_path / "Results").exists()


def test_errors_in_a_default_file_name_that_file(layered, tmp_path):
    base, exp = layered
    base.write_text(base.read_text().replace("seed = 3", "seed = -1"))
    with pytest.raises(ConfigError, match=rf"^{base}: training.seed: expected an integer >= 0"):
        load_config(exp)
    exp.write_text('defaults = ["missing.toml"]\n')
    with pytest.raises(ConfigError, match=rf"{exp}: defaults: file not found: .*missing.toml"):
        load_config(exp)
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('defaults = ["b.toml"]\n')
    b.write_text('defaults = ["a.toml"]\n')
    with pytest.raises(ConfigError, match="the defaults form a cycle: a.toml -> b.toml -> a.toml"):
        load_config(a)
    a.write_text("defaults = 3\n")
    with pytest.raises(ConfigError, match="defaults: expected a list of TOML file paths"):
        load_config(a)


def test_placeholders_name_run_folders(write_config, tmp_path):
    path = write_config(num_epochs=1, experiment="{date}_edsr_lr{model.internal_params.lr}",
                        extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    assert (tmp_path / "Results" / f"{time.strftime('%Y-%m-%d')}_edsr_lr0.001").is_dir()
    # a name/version layout: a folder inside a folder, continued through its stored config
    path = write_config(num_epochs=1, experiment="edsr/seed{training.seed}",
                        extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "edsr" / "seed3"
    assert (node / "config.toml").is_file()
    assert 'experiment = "edsr/seed3"' in (node / "config.toml").read_text()
    assert train_main(["--parameters", str(node / "config.toml"), "--continue_from_epoch", "last",
                       "--num_epochs", "2"]) == 0
    from rumpy import load_experiment
    assert load_experiment(node, epoch="last").rumpy.epoch == 2
    for bad, message in (("{nope}", "unknown placeholder {nope}"),
                         ("a{date", "unbalanced braces"),
                         ("../{seed}", "expected a plain folder name"),
                         ("{model.internal_params}", "unknown placeholder")):
        path = write_config(num_epochs=1, experiment=bad)
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_errors_found_after_loading_name_the_override_or_flag_that_set_the_key(write_config,
                                                                               caplog):
    path = write_config()
    assert train_main(["--parameters", str(path), "model.internal_params.num_blocks=1.5"]) == 2
    assert ("override model.internal_params.num_blocks=1.5: model.internal_params.num_blocks: "
            "expected int for edsr" in caplog.text)
    caplog.clear()
    # overrides may stand anywhere among the flags
    assert train_main(["--parameters", str(path), 'training.metrics=["PSNRX"]', "--num_epochs",
                       "1"]) == 2
    assert "override training.metrics=[\"PSNRX\"]: training.metrics: unknown metric" in caplog.text


def test_a_sweep_cells_values_are_one_entry_of_the_chain(layered):
    """The config.toml header lists what was composed: a sweep cell's several values once."""
    from rumpy.config.load import config_text
    _, exp = layered
    values = {"model.internal_params.lr": ("sweep cell c1", 1e-3),
              "training.seed": ("sweep cell c1", 4)}
    cfg = load_config(exp, values=values)
    assert cfg.chain.count("sweep cell c1") == 1
    header = config_text(cfg).splitlines()[0]
    assert header.endswith("< sweep cell c1"), header
