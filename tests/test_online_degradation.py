"""Online degradation: a training set with `hr` and a `degradations` table (no `lr`) makes each
LR patch from its HR patch on the fly, seeded by (seed, epoch, index): a continued run equals an
uninterrupted one, a conditioned model gets the applied parameters, and bad tables are one-line
errors before anything is written."""
from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main

DEGRADATIONS = """\
pipeline = [["realesrganblur", "b"], ["downsample", "d"], ["realesrgannoise", "n"]]
[deg_configs.b]
kernel_range = ["iso", "aniso"]
kernel_size = 7
sigma_x_range = [0.5, 2.5]
sigma_y_range = [0.5, 2.5]
[deg_configs.d]
[deg_configs.n]
gaussian_poisson_ratio = 1.0
gaussian_noise_sigma_range = [1.0, 10.0]
gray_noise_probability = 0.0
"""


@pytest.fixture(scope="module")
def val_set(tmp_path_factory, tiny_sets) -> Path:
    root = tmp_path_factory.mktemp("online_val")
    (root / "p.toml").write_text("scale = 2\nseed = 1\n" + DEGRADATIONS)
    assert rumpy_main(["degrade", "--hr", str(tiny_sets["val_hr"]), "--out", str(root / "lr"),
                       "--pipeline_config", str(root / "p.toml")]) == 0
    return root / "lr"


def online_toml(tmp_path: Path, tiny_sets, val_lr: Path, *, model="sftmd", num_epochs=2,
                metadata='["sigma_x", "gaussian_noise_sigma"]', train_extra="",
                degradations=DEGRADATIONS, name="online") -> Path:
    params = {"sftmd": "num_features = 8\nnum_blocks = 1",
              "edsr": "num_features = 8\nnum_blocks = 1"}[model]
    table = "\n".join(
        line.replace("[deg_configs.", "[data.training_sets.tiles.degradations.deg_configs.")
        if line.startswith("[deg_configs.") else line
        for line in degradations.splitlines())
    pipeline, rest = table.split("\n", 1)
    eval_meta = (f'degradation_metadata = "on_site"\nmetadata = {metadata}'
                 if model == "sftmd" else "")
    text = textwrap.dedent(f"""\
        experiment = "{name}"
        experiment_save_loc = "{tmp_path / 'Results'}"

        [training]
        num_epochs = {num_epochs}
        seed = 3
        gpu = "off"
        metrics = ["PSNR"]
        num_samples = 0
        aim_track = false

        [model]
        name = "{model}"

        [model.internal_params]
        scale = 2
        lr = 1e-3
        {{params}}

        [data]
        batch_size = 4
        dataloader_threads = 0
        cache = "memory"
        cache_dir = "{tmp_path / 'cache'}"

        [data.eval_sets.chelsea]
        lr = "{val_lr}"
        hr = "{tiny_sets['val_hr']}"
        {{eval_meta}}

        [data.training_sets.tiles]
        hr = "{tiny_sets['train_hr']}"
        crop = 10
        {('metadata = ' + metadata) if model == "sftmd" else ""}
        {train_extra}

        [data.training_sets.tiles.degradations]
        {{pipeline}}
        """).replace("{params}", params).replace("{eval_meta}", eval_meta).replace(
        "{pipeline}", pipeline) + rest + "\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _rows(node: Path) -> list[dict]:
    from conftest import no_timing
    with open(node / "result_outputs" / "summary.csv", newline="") as f:
        return no_timing(list(csv.DictReader(f)))


@pytest.mark.slow
def test_online_training_resumes_exactly(tmp_path, tiny_sets, val_set):
    straight = online_toml(tmp_path, tiny_sets, val_set, name="straight")
    assert train_main(["--parameters", str(straight)]) == 0
    resumed = online_toml(tmp_path, tiny_sets, val_set, name="resumed", num_epochs=1)
    assert train_main(["--parameters", str(resumed)]) == 0
    resumed.write_text(resumed.read_text().replace("num_epochs = 1", "num_epochs = 2"))
    assert train_main(["--parameters", str(resumed), "--continue_from_epoch", "last"]) == 0
    a, b = _rows(tmp_path / "Results" / "straight"), _rows(tmp_path / "Results" / "resumed")
    assert len(a) == 2 and a == b


def test_online_patches_and_their_metadata(tmp_path, tiny_sets, val_set):
    from rumpy.catalog import load_config
    from rumpy.data.paired import build_loaders, check_data

    cfg = load_config(online_toml(tmp_path, tiny_sets, val_set))
    train, evals = check_data(cfg)
    loaders = build_loaders(cfg, train, evals, pin_memory=False)
    dataset = loaders.train.dataset
    sample = dataset[(1, 0)]
    assert sample["lq"].shape == (3, 10, 10) and sample["gt"].shape == (3, 20, 20)
    meta = sample["metadata"].numpy()
    assert meta.shape == (2,) and (0 <= meta).all() and (meta <= 1).all()
    again = dataset[(1, 0)]  # the same (epoch, index): the same patch and degradation
    assert np.array_equal(again["lq"], sample["lq"]) and np.array_equal(again["metadata"], meta)
    other = dataset[(2, 0)]  # another epoch: another draw
    assert not np.array_equal(other["lq"].numpy(), sample["lq"].numpy())
    # an EDSR (no metadata) trains on an online set as well
    plain = online_toml(tmp_path, tiny_sets, val_set, model="edsr", num_epochs=1, name="plain")
    assert train_main(["--parameters", str(plain)]) == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"train_extra": 'lr = "somewhere"'}, "not both"),
    ({"degradations": DEGRADATIONS.replace('["downsample", "d"], ', "").replace(
        "[deg_configs.d]\n", "")}, "exactly one 'downsample'"),
    ({"metadata": '["sigma_xx"]'}, "did you mean 'sigma_x'"),
    ({"degradations": DEGRADATIONS.replace("kernel_size = 7", "kernel_sise = 7")},
     "degradations.deg_configs.b.kernel_sise"),
    ({"train_extra": "crop = 0"}, "give crop > 0"),
])
def test_bad_online_sets_are_refused_before_writing(tmp_path, tiny_sets, val_set, caplog, kwargs,
                                                    message):
    cfg = online_toml(tmp_path, tiny_sets, val_set, **kwargs)
    if "crop = 0" in kwargs.get("train_extra", ""):
        cfg.write_text(cfg.read_text().replace("crop = 10\n", ""))
    with caplog.at_level("ERROR"):
        assert train_main(["--parameters", str(cfg)]) != 0
    assert message in caplog.text
    assert not (tmp_path / "Results").exists()
