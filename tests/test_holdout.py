"""`test_indices`: samples of a training set held out of training and validated as their own
eval set, for SR (image pairs) and regression (arrays), with bad indices refused up front."""
from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import rows
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.training.setup import prepare


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sr_test_indices_leave_training_and_are_validated_as_their_own_set(write_config,
                                                                           tmp_path):
    path = write_config(num_epochs=1, extra_training='logging = "text"')
    path.write_text(path.read_text().replace('crop = 12\n', 'crop = 12\ntest_indices = [0, 3]\n'))
    run = prepare(load_config(path))
    all_keys = sorted(p.stem for p in Path(load_config(path).data.training_sets["tiles"].hr)
                      .iterdir())
    train_keys = run.loaders.train.dataset.sets[0].keys
    assert sorted(train_keys) == [k for i, k in enumerate(all_keys) if i not in (0, 3)]
    assert list(run.loaders.evals) == ["chelsea", "tiles_test"]
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    row = rows(node)[0]
    assert "val-tiles_test-PSNR" in row and "val-PSNR" in row  # the first eval set is unnamed
    held = [r for r in _csv(node / "result_outputs" / "per_image_epoch_1.csv")
            if r["set"] == "tiles_test"]
    assert [r["image"] for r in held] == [all_keys[0], all_keys[3]]
    # rumpy eval of the node's own sets includes the held-out set, with the same numbers
    from rumpy.cli.main import main as rumpy_main
    assert rumpy_main(["eval", str(node), "--epoch", "1"]) == 0
    scored = _csv(node / "eval" / "epoch_1" / "tiles_test" / "individual_metrics.csv")
    assert [(r["image"], r["PSNR"]) for r in scored] == [(r["image"], r["PSNR"]) for r in held]


@pytest.mark.parametrize("indices, message", [
    ("[8]", "expected indices 0..7"), ("[1, 1]", "each index once"),
    ("[0, 1, 2, 3, 4, 5, 6, 7]", "none is left to train on"), ('["a"]', "a list of integers")])
def test_bad_test_indices_are_one_line_errors(write_config, tmp_path, indices, message):
    path = write_config(num_epochs=1)
    path.write_text(path.read_text().replace('crop = 12\n', f'crop = 12\ntest_indices = {indices}\n'))
    with pytest.raises(ConfigError, match=message) as info:
        prepare(load_config(path))
    assert "data.training_sets.tiles.test_indices" in str(info.value)
    assert not (tmp_path / "Results").exists()


def test_test_indices_on_an_eval_set_are_refused(write_config):
    path = write_config(num_epochs=1)
    path.write_text(path.read_text() + "test_indices = [0]\n")
    with pytest.raises(ConfigError, match="data.eval_sets.chelsea.test_indices: only a training"):
        load_config(path)


def test_regression_held_out_rows_are_validated_and_left_out_of_the_statistics(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5]) + 3
    np.savez(tmp_path / "points.npz", inputs=x, targets=y)
    held = [2, 5, 11, 30]
    path = tmp_path / "reg.toml"
    path.write_text(textwrap.dedent(f"""\
        experiment = "reg"
        experiment_save_loc = "{tmp_path / 'Results'}"
        task = "regression"
        [training]
        num_epochs = 2
        gpu = "off"
        aim_track = false
        logging = "text"
        [model]
        name = "mlp"
        [model.internal_params]
        hidden_sizes = [8]
        [data]
        batch_size = 8
        dataloader_threads = 0
        [data.training_sets.points]
        type = "arrays"
        file = "{tmp_path / 'points.npz'}"
        test_indices = {held}
        """))
    run = prepare(load_config(path))
    kept = np.delete(np.arange(40), held)
    assert list(run.loaders.evals) == ["points_test"]
    assert np.allclose(run.task.stats["target_mean"].cpu().numpy(), y[kept].mean(), atol=1e-6)
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "reg"
    per_sample = _csv(node / "result_outputs" / "per_sample_epoch_2.csv")
    assert len(per_sample) == len(held) and {r["set"] for r in per_sample} == {"points_test"}
    assert [float(r["true-target"]) for r in per_sample] == pytest.approx(y[held].tolist())
    assert "val-RMSE" in rows(node)[-1]
