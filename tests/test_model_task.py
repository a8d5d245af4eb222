"""task = "model": the model class owns its loss and metrics (with directions), as pixlib's
models do; trained, continued and evaluated through the CLI, best epoch by its own metric's
declared direction, and load_experiment's test-time overrides, run names and batch dicts."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import no_timing, rows

BIN = Path(sys.executable).parent
PLUGIN = Path(__file__).parent / "plugins" / "own_loss.py"


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                          timeout=600)


def _toml(root: Path, data: dict, extra: str = "") -> Path:
    shutil.copy(PLUGIN, root / "own_loss.py")
    path = root / "own.toml"
    path.write_text(textwrap.dedent(f"""\
        experiment = "own"
        experiment_save_loc = "{root / 'Results'}"
        task = "model"
        plugins = ["own_loss.py"]

        [training]
        num_epochs = 3
        seed = 5
        gpu = "off"
        trackers = []
        logging = "text"
        best_load_metric = "val-within"
        {extra}

        [model]
        name = "own_loss_mlp"

        [model.internal_params]
        lr = 3e-3

        [data]
        batch_size = 32
        dataloader_threads = 0

        [data.training_sets.points]
        type = "arrays"
        file = "{data['train_npz']}"
        target_names = ["wave", "bowl"]

        [data.eval_sets.held_out]
        type = "arrays"
        file = "{data['valid_npz']}"
        target_names = ["wave", "bowl"]
        """))
    return path


@pytest.mark.slow
def test_a_model_that_owns_its_loss_and_metrics_trains_continues_and_evaluates(tmp_path,
                                                                               regression_data):
    path = _toml(tmp_path, regression_data)
    out = _run("rumpy", "train", "--parameters", str(path), "--num_epochs", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    node = tmp_path / "Results" / "own"
    first = rows(node)
    assert {"val-loss", "val-mae", "val-within"} <= set(first[0])
    assert all(0.0 <= float(r["val-within"]) <= 1.0 for r in first)
    out = _run("rumpy", "train", "--parameters", str(path), "--continue_from_epoch", "last")
    assert out.returncode == 0, out.stderr[-3000:]
    assert no_timing(rows(node))[:2] == no_timing(first) and len(rows(node)) == 3
    # 'best' follows the model's declared direction for `within` (max), recorded for readers
    within = [float(r["val-within"]) for r in rows(node)]
    best = max(range(3), key=lambda i: (within[i], -i)) + 1
    status = (node / "status.json").read_text()
    assert '"within": "max"' in status and f'"epoch": {best}' in status
    tree = _run("rumpy", "tree", str(node))
    assert f"best val-within {max(within):.4f} @ {best}" in tree.stdout
    out = _run("rumpy", "eval", str(node))
    assert out.returncode == 0, out.stderr[-3000:]
    with open(node / "eval" / f"epoch_{best}" / "average_metrics.csv", newline="") as f:
        evaluated = next(csv.DictReader(f))
    row = rows(node)[best - 1]
    for key in ("loss", "mae", "within"):
        assert float(evaluated[key]) == pytest.approx(float(row[f"val-{key}"]), rel=1e-9)
    # load_experiment: a run name under a save location, a batch dict, test-time overrides
    script = textwrap.dedent(f"""\
        import numpy as np, torch, rumpy
        model = rumpy.load_experiment("own", epoch=1, save_loc={str(tmp_path / 'Results')!r},
                                      overrides={{"data.eval_batch_size": 7}})
        x = torch.from_numpy(np.load({str(regression_data['valid_npz'])!r})["inputs"][:4])
        print(tuple(model({{"inputs": x}}).shape), model.rumpy.cfg.data.eval_batch_size,
              model.rumpy.epoch)
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["(4,", "2)", "7", "1"]


def test_a_model_task_model_without_its_loss_is_refused_before_anything_is_written(
        tmp_path, regression_data):
    path = _toml(tmp_path, regression_data)
    (tmp_path / "own_loss.py").write_text(PLUGIN.read_text().replace("def loss(", "def _loss("))
    out = _run("train_sisr", "--parameters", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "model.name: own_loss_mlp serves task 'model' but lacks loss" in out.stderr
    assert not (tmp_path / "Results").exists()
