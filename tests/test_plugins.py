"""Plugins, as a user brings them: a whole third task (denoising, tests/plugins/denoise.py) and a
model file next to the TOML, named by `plugins = [...]` and nothing else, through the public CLI
in separate processes (a plugin registers into the process's registries)."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from conftest import no_timing, rows, same_weights, weights
from rumpy.data.images import write_png

BIN = Path(sys.executable).parent
PLUGIN = Path(__file__).parent / "plugins" / "denoise.py"


def _run(*cmd: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _noisy_pairs(root: Path, photo: str, count: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = getattr(data, photo)()
    for k in range(count):
        top, left = (k * 53) % (img.shape[0] - size), (k * 71) % (img.shape[1] - size)
        clean = np.ascontiguousarray(img[top: top + size, left: left + size, :3])
        noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
        write_png(root / "clean" / f"{photo}_{k}.png", clean)
        write_png(root / "noisy" / f"{photo}_{k}.png", noisy)


@pytest.fixture(scope="module")
def denoise(tmp_path_factory) -> Path:
    """A folder with the plugin next to a denoising TOML, and noisy/clean photo tiles."""
    root = tmp_path_factory.mktemp("denoise")
    for sub in ("train/clean", "train/noisy", "val/clean", "val/noisy"):
        (root / sub).mkdir(parents=True)
    _noisy_pairs(root / "train", "astronaut", 6, 32, 0)
    _noisy_pairs(root / "train", "coffee", 6, 32, 1)
    _noisy_pairs(root / "val", "chelsea", 2, 32, 2)
    shutil.copy(PLUGIN, root / "denoise.py")
    (root / "dn.toml").write_text(textwrap.dedent(f"""\
        experiment = "dn"
        experiment_save_loc = "{root / 'Results'}"
        task = "denoise"
        plugins = ["denoise.py"]

        [training]
        num_epochs = 2
        gpu = "off"
        trackers = []
        seed = 3

        [model]
        name = "tiny_dncnn"

        [model.internal_params]
        lr = 2e-3
        features = 8

        [data]
        batch_size = 4
        dataloader_threads = 0
        cache_dir = "{root / 'cache'}"

        [data.training_sets.train]
        lr = "train/noisy"
        hr = "train/clean"
        crop = 16

        [data.eval_sets.val]
        lr = "val/noisy"
        hr = "val/clean"
        """))
    return root


@pytest.mark.slow
def test_a_plugin_task_trains_continues_forks_evaluates_predicts_and_exports(denoise):
    toml, node = denoise / "dn.toml", denoise / "Results" / "dn"
    out = _ok(_run("rumpy", "train", "--parameters", str(toml)))
    assert "noisy input baseline on val" in out.stderr
    first = rows(node)
    assert [r["epoch"] for r in first] == ["1", "2"] and float(first[-1]["val-PSNR"]) > 0
    assert (node / "result_outputs" / "per_image_denoised_epoch_2.csv").is_file()
    config = (node / "config.toml").read_text()
    assert str(denoise / "denoise.py") in config and "plugin_sha256" in config

    # continue to 3 epochs; a fork at 1 with another lr: the node's config.toml finds the plugin
    _ok(_run("rumpy", "train", "--parameters", str(node / "config.toml"),
             "--continue_from_epoch", "last", "--num_epochs", "3"))
    assert no_timing(rows(node))[:2] == no_timing(first) and len(rows(node)) == 3
    _ok(_run("rumpy", "train", "--parameters", str(toml), "--continue_from_epoch", "1",
             "--new_branch", "--new_branch_name", "slow", "model.internal_params.lr=5e-4",
             "--num_epochs", "2"))
    inherited = no_timing(rows(node / "slow"))[0]
    assert inherited.pop("inherited") == "1"
    assert inherited == {k: v for k, v in no_timing(first)[0].items() if k != "inherited"}
    assert not same_weights(weights(node / "slow", 2), weights(node, 2))

    # eval (the task's own evaluation equals its validation of the same epoch), export, predict
    _ok(_run("rumpy", "eval", str(node), "--epoch", "2"))
    with open(node / "eval" / "epoch_2" / "average_metrics.csv", newline="") as f:
        evaluated = next(csv.DictReader(f))
    assert float(evaluated["PSNR"]) == pytest.approx(float(rows(node)[1]["val-PSNR"]), abs=1e-9)
    assert "noisy_input-PSNR" in evaluated
    _ok(_run("rumpy", "export-model", str(node), "--epoch", "2"))
    contract = json.loads((node / "export" / "epoch_2" / "network.json").read_text())
    assert contract["task"] == "denoise" and contract["files"]["torchscript"]["check_passed"]
    script = (f"import numpy as np, rumpy; from skimage import data\n"
              f"x = np.ascontiguousarray(data.chelsea()[:20, :24])\n"
              f"y = rumpy.predict({str(node)!r}, x, epoch=2)\n"
              f"print(y.shape, y.dtype)\n")
    shown = _ok(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=300))
    assert shown.stdout.strip() == "(20, 24, 3) uint8"


MODEL_PLUGIN = '''
from torch import nn
from rumpy.models import MODELS


@MODELS.register("my_espcn", tasks=("sisr",))
class MyESPCN(nn.Module):
    def __init__(self, scale: int, features: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, features, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(features, 3 * scale * scale, 3, padding=1),
                                  nn.PixelShuffle(scale))

    def forward(self, x):
        return self.body(x)
'''


@pytest.mark.slow
def test_a_plugin_model_next_to_the_toml_trains_evaluates_exports_and_is_missed_when_gone(
        write_config, tmp_path):
    (tmp_path / "my_models.py").write_text(MODEL_PLUGIN)
    path = write_config("sr.toml", num_epochs=1, model="my_espcn", params="features = 8")
    path.write_text('plugins = ["my_models.py"]\n' + path.read_text())
    _ok(_run("train_sisr", "--parameters", str(path)))
    node = next(p.parent for p in (tmp_path / "Results").glob("*/config.toml"))
    listed = _ok(_run("rumpy", "models")).stdout
    assert "my_espcn" not in listed  # not named by any config: never imported
    _ok(_run("rumpy", "eval", str(node)))   # no flag: the node's config.toml names the plugin
    _ok(_run("rumpy", "export-model", str(node)))

    (tmp_path / "my_models.py").write_text(MODEL_PLUGIN + "\n# edited\n")
    changed = _ok(_run("rumpy", "eval", str(node)))
    assert "changed since the node was trained" in changed.stderr
    went_on = _ok(_run("train_sisr", "--parameters", str(node / "config.toml"),
                       "--continue_from_epoch", "last", "--num_epochs", "2"))
    assert "changed since the node was trained" in went_on.stderr
    (tmp_path / "my_models.py").unlink()
    gone = _run("rumpy", "eval", str(node))
    assert gone.returncode == 2 and "Traceback" not in gone.stderr
    line = gone.stderr.strip().splitlines()[-1]
    assert "plugins" in line and "my_models.py does not exist (the node was trained with it)" in line


def test_a_plugin_that_fails_to_import_is_one_line_before_anything_is_written(write_config,
                                                                              tmp_path):
    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('no GPU driver here')\n")
    path = write_config("sr.toml", num_epochs=1)
    path.write_text('plugins = ["broken.py", "not_a_module_anywhere"]\n' + path.read_text())
    result = _run("train_sisr", "--parameters", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "plugins: plugin" in result.stderr and "RuntimeError: no GPU driver here" in result.stderr
    assert not (tmp_path / "Results").exists()
    path.write_text(path.read_text().replace('"broken.py", ', ""))
    result = _run("train_sisr", "--parameters", str(path))
    assert result.returncode == 2 and "'not_a_module_anywhere': no module of this name" in \
        result.stderr


def test_an_installed_package_registers_through_the_entry_point_group(tmp_path):
    """A package installed with an entry point in `rumpy.plugins` is imported the first time
    a listing or a config needs the registries, and its components name their origin."""
    site = tmp_path / "site"
    (site / "mylab_rumpy-0.1.dist-info").mkdir(parents=True)
    (site / "mylab_rumpy-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mylab-rumpy\nVersion: 0.1\n")
    (site / "mylab_rumpy-0.1.dist-info" / "entry_points.txt").write_text(
        "[rumpy.plugins]\nmylab = mylab_models\n")
    (site / "mylab_models.py").write_text(MODEL_PLUGIN.replace("my_espcn", "lab_espcn"))
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([str(BIN / "rumpy"), "models"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    line = next(x for x in listed.stdout.splitlines() if x.startswith("lab_espcn"))
    assert "[plugin mylab (mylab_models)]" in line
