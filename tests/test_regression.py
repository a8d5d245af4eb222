"""The regression task, trained for real: on arrays (npz, csv) and on images with targets; the
result tree (continue exactly, SIGKILL mid-epoch, fork with a new lr, early stopping), export,
TensorBoard event files read back with tensorboard's own reader, and the built-in blur quickstart
beating its mean predictor."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import no_timing, rows, same_weights, weights

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.core.checkpoint import load_checkpoint
from rumpy.training.setup import prepare


def arrays_toml(data: dict, save_loc: Path, *, epochs: int = 3, extra_training: str = "",
                extra_params: str = "", kind: str = "npz", model: str = "mlp",
                arch: str = "hidden_sizes = [32, 32]", experiment: str = "reg",
                logging: str = "text") -> str:
    if kind == "npz":
        train = f'file = "{data["train_npz"]}"\ntarget_names = ["wave", "bowl"]'
        valid = f'file = "{data["valid_npz"]}"\ntarget_names = ["wave", "bowl"]'
    else:
        cols = 'input_columns = ["x0", "x1", "x2", "x3", "x4", "x5"]\ntarget_columns = ["wave", "bowl"]'
        train = f'file = "{data["train_csv"]}"\n{cols}'
        valid = f'file = "{data["valid_csv"]}"\n{cols}'
    return textwrap.dedent("""\
        experiment = "{experiment}"
        experiment_save_loc = "{save_loc}"
        task = "regression"

        [training]
        num_epochs = {epochs}
        seed = 5
        gpu = "off"
        aim_track = false
        logging = "{logging}"
        {extra_training}

        [model]
        name = "{model}"

        [model.internal_params]
        lr = 3e-3
        {arch}
        {extra_params}

        [data]
        batch_size = 32
        dataloader_threads = 0

        [data.training_sets.points]
        type = "arrays"
        {train}

        [data.eval_sets.held_out]
        type = "arrays"
        {valid}
        """).format(experiment=experiment, save_loc=save_loc, epochs=epochs,
                    extra_training=extra_training, model=model, arch=arch,
                    extra_params=extra_params, train=train, valid=valid, logging=logging)


@pytest.fixture
def write(tmp_path, regression_data):
    def write(name: str = "reg.toml", **kw) -> Path:
        path = tmp_path / name
        path.write_text(arrays_toml(regression_data, tmp_path / "Results", **kw))
        return path
    return write


def _train(path: Path, *flags: str) -> None:
    assert train_main(["--parameters", str(path), *flags]) == 0


def test_arrays_regression_beats_the_mean_predictor_and_writes_its_outputs(write, tmp_path):
    _train(write(epochs=8, logging="visual"))
    node = tmp_path / "Results" / "reg"
    summary = rows(node)
    assert list(summary[0])[:8] == ["epoch", "train-loss", "learning-rate", "val-loss", "val-MAE",
                                 "val-RMSE", "val-R2", "val-Pearson"]
    assert {"val-MAE-wave", "val-RMSE-bowl", "val-R2-wave", "val-Pearson-bowl"} <= set(summary[0])
    last = summary[-1]
    # metrics are in original units: the mean over targets of the per-target values
    assert float(last["val-RMSE"]) == pytest.approx(
        (float(last["val-RMSE-wave"]) + float(last["val-RMSE-bowl"])) / 2)
    baseline = list(csv.DictReader(open(node / "result_outputs" / "mean_predictor_baseline.csv")))
    assert baseline[0]["set"] == "held_out" and abs(float(baseline[0]["R2"])) < 0.1
    assert float(last["val-RMSE"]) < 0.6 * float(baseline[0]["RMSE"])
    assert float(last["val-R2"]) > 0.5
    per_sample = list(csv.DictReader(open(node / "result_outputs" / "per_sample_epoch_8.csv")))
    assert len(per_sample) == 96 and set(per_sample[0]) == {
        "set", "sample", "true-wave", "pred-wave", "error-wave", "true-bowl", "pred-bowl",
        "error-bowl"}
    errors = np.array([float(r["pred-bowl"]) - float(r["true-bowl"]) for r in per_sample])
    assert np.sqrt((errors ** 2).mean()) == pytest.approx(float(last["val-RMSE-bowl"]), rel=1e-5)
    assert (node / "result_outputs" / "epoch_8_samples" / "held_out_scatter.png").is_file()
    for plot in ("loss", "RMSE", "R2", "learning_rate"):
        assert (node / "result_outputs" / f"{plot}.png").is_file()
    ckpt = load_checkpoint(node / "saved_models" / "epoch_8.pt")
    stats = ckpt["parts"]["task"]["stats"]
    assert stats["target_mean"].shape == (2,) and stats["input_std"].shape == (6,)
    assert "finished: best val-RMSE" in (node / "train.log").read_text()


def test_normalisation_statistics_come_from_the_training_set(write, regression_data):
    run = prepare(load_config(write()))
    data = np.load(regression_data["train_npz"])
    assert torch.allclose(run.task.stats["target_mean"], torch.tensor(data["targets"].mean(0)))
    assert torch.allclose(run.task.stats["input_std"], torch.tensor(data["inputs"].std(0)), atol=1e-6)


@pytest.mark.slow
def test_csv_arrays_and_original_space_loss_train(write, tmp_path):
    _train(write(kind="csv", epochs=2, extra_params='loss = {mse = 1.0, l1 = 0.5}'))
    text = (tmp_path / "reg.toml").read_text().replace("[data]", '[data]\nloss_space = "original"')
    (tmp_path / "orig.toml").write_text(text)
    _train(tmp_path / "orig.toml", "--experiment_name", "original")
    a, b = rows(tmp_path / "Results" / "reg"), rows(tmp_path / "Results" / "original")
    assert len(a) == len(b) == 2
    assert a[0]["val-RMSE-wave"] != "" and a[0]["train-loss"] != b[0]["train-loss"]


@pytest.mark.slow
def test_images_with_targets_regression_trains_and_continues(tmp_path, regression_data):
    d = regression_data
    path = tmp_path / "img.toml"
    path.write_text(textwrap.dedent(f"""\
        experiment = "blur"
        experiment_save_loc = "{tmp_path / 'Results'}"
        task = "regression"
        [training]
        num_epochs = 3
        seed = 1
        gpu = "off"
        aim_track = false
        logging = "text"
        [model]
        name = "cnn_regressor"
        [model.internal_params]
        lr = 1e-3
        num_features = 8
        num_blocks = 2
        [data]
        batch_size = 8
        dataloader_threads = 0
        [data.training_sets.blur]
        type = "images_with_targets"
        images = "{d['train_images']}"
        targets = "{d['train_targets']}"
        crop = 24
        random_augment = true
        [data.eval_sets.blur_valid]
        type = "images_with_targets"
        images = "{d['valid_images']}"
        targets = "{d['valid_targets']}"
        """))
    _train(path)
    whole = tmp_path / "Results" / "blur"
    _train(path, "--experiment_name", "half", "--num_epochs", "2")
    _train(path, "--experiment_name", "half", "--continue_from_epoch", "last")
    half = tmp_path / "Results" / "half"
    assert no_timing(rows(half)) == no_timing(rows(whole))
    assert same_weights(weights(half, 3), weights(whole, 3))
    per_sample = list(csv.DictReader(open(whole / "result_outputs" / "per_sample_epoch_3.csv")))
    assert [r["sample"] for r in per_sample][:2] == sorted(r["sample"] for r in per_sample)[:2]
    assert all(r["sample"].endswith(".png") for r in per_sample)
    true = {r["image"]: float(r["blur_sigma"]) for r in csv.DictReader(open(d["valid_targets"]))}
    assert all(float(r["true-blur_sigma"]) == pytest.approx(true[r["sample"]], rel=1e-6)
               for r in per_sample)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_continue_is_exact(write, tmp_path, regression_data):
    text = arrays_toml(regression_data, tmp_path / "Results", epochs=3,
                       arch="hidden_sizes = [256, 256]")
    path = tmp_path / "slow.toml"
    text = text.replace("batch_size = 32", "batch_size = 4")
    path.write_text(text.replace('[data.training_sets.points]', '[data.training_sets.points]\nrepeat = 15'))
    _train(path, "--experiment_name", "whole")
    node = tmp_path / "Results" / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                             "--experiment_name", "killed"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    end = time.time() + 120
    while not (node / "status.json").exists() or \
            json.loads((node / "status.json").read_text()).get("epochs_done") != 1:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end
        time.sleep(0.01)
    time.sleep(0.2)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (node / "saved_models" / "epoch_2.pt").exists()
    _train(path, "--experiment_name", "killed", "--continue_from_epoch", "last")
    whole = tmp_path / "Results" / "whole"
    assert no_timing(rows(node)) == no_timing(rows(whole))
    assert same_weights(weights(node, 3), weights(whole, 3))


def test_fork_with_new_lr_early_stopping_and_export(write, tmp_path, capsys):
    path = write(epochs=4)
    _train(path)
    node = tmp_path / "Results" / "reg"
    fork = write(name="fork.toml", epochs=30, extra_params="",
                 extra_training="early_stopping_patience = 2\nearly_stopping_metric = \"R2\"")
    fork.write_text(fork.read_text().replace("lr = 3e-3", "lr = 3e-2"))
    _train(fork, "--continue_from_epoch", "2", "--new_branch", "--new_branch_name", "fast")
    branch = node / "fast"
    summary = rows(branch)
    assert [r["inherited"] for r in summary[:2]] == ["1", "1"] and summary[2]["inherited"] == "0"
    assert no_timing(summary[:2]) == [{**r, "inherited": "1"} for r in no_timing(rows(node))[:2]]
    status = json.loads((branch / "status.json").read_text())
    assert status["state"] == "stopped_early" and len(summary) < 30
    assert "val-R2 did not improve" in status["stop_reason"]
    lineage = json.loads((branch / "lineage.json").read_text())
    assert lineage["config_diff"]["model.internal_params.lr"] == [3e-3, 3e-2]
    assert rumpy_main(["export", str(node), "--best", "RMSE"]) == 0
    best = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    by_node = {r["branch"]: r for r in best}
    own = [r for r in rows(branch) if r["inherited"] == "0"]
    assert float(by_node["fast"]["val-RMSE"]) == min(float(r["val-RMSE"]) for r in own)  # lower is better
    assert rumpy_main(["tree", str(node)]) == 0
    assert "best val-RMSE" in capsys.readouterr().out


@pytest.mark.slow
def test_tensorboard_event_files_equal_the_summary(write, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = write(epochs=3, extra_training='trackers = ["tensorboard"]')
    _train(path)
    node = tmp_path / "Results" / "reg"
    fork = write(name="fork.toml", epochs=4, extra_training='trackers = ["tensorboard"]')
    fork.write_text(fork.read_text().replace("lr = 3e-3", "lr = 1e-3"))
    _train(fork, "--continue_from_epoch", "2", "--new_branch", "--new_branch_name", "slow")
    # an in-place continue after the root's last epoch appends without duplicating steps
    _train(write(name="more.toml", epochs=4, extra_training='trackers = ["tensorboard"]'),
           "--continue_from_epoch", "last")
    for folder in (node, node / "slow"):
        events = EventAccumulator(str(folder / "tensorboard"))
        events.Reload()
        summary = rows(folder)
        for tag, column in (("train/loss", "train-loss"), ("train/learning_rate", "learning-rate"),
                            ("val/held_out/RMSE", "val-RMSE"), ("val/held_out/R2/bowl", "val-R2-bowl"),
                            ("val/held_out/loss", "val-loss")):
            scalars = events.Scalars(tag)
            assert [s.step for s in scalars] == [int(r["epoch"]) for r in summary], (folder, tag)
            assert [s.value for s in scalars] == pytest.approx([float(r[column]) for r in summary],
                                                               rel=1e-6)
        images = [t for t in events.Tags()["images"]]
        assert images == ["samples/held_out/scatter"]


def test_bad_regression_configs_are_one_line_errors(write, tmp_path, regression_data):
    def fails(text: str) -> str:
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            prepare(load_config(path))
        assert not (tmp_path / "Results").exists()
        assert "\n" not in str(info.value)
        return str(info.value)

    good = arrays_toml(regression_data, tmp_path / "Results")
    assert "model.internal_params.scale: not used by task 'regression'" in fails(
        good.replace("lr = 3e-3", "lr = 3e-3\nscale = 2"))
    assert "data.training_sets.points.crop: unknown key" in fails(
        good.replace('type = "arrays"', 'type = "arrays"\ncrop = 8', 1))
    assert "data.training_sets.points.type: dataset type 'paired' feeds task 'sisr'" in fails(
        good.replace('type = "arrays"', 'type = "paired"', 1))
    assert "unknown dataset type 'array'; did you mean 'arrays'?" in fails(
        good.replace('type = "arrays"', 'type = "array"', 1))
    assert "model.name: 'edsr' is a sisr model, not one for task 'regression'" in fails(
        good.replace('name = "mlp"', 'name = "edsr"').replace("hidden_sizes = [32, 32]", ""))
    assert "training.metrics: unknown metric 'PSNR'" in fails(
        good.replace('gpu = "off"', 'gpu = "off"\nmetrics = ["PSNR"]'))
    assert "training.metric_channel: not used by task 'regression'" in fails(
        good.replace('gpu = "off"', 'gpu = "off"\nmetric_channel = "y"'))
    assert "model.internal_params.hidden_sizes: expected a non-empty list of integers >= 1 for " \
           "mlp, got [0]" in fails(good.replace("hidden_sizes = [32, 32]", "hidden_sizes = [0]"))
    assert "model.internal_params: cannot build mlp" in fails(
        good.replace("hidden_sizes = [32, 32]", 'hidden_sizes = [32]\nactivation = "swish"'))
    assert "model.internal_params.loss.l3: unknown loss 'l3'" in fails(
        good.replace("lr = 3e-3", "lr = 3e-3\nloss = {l1 = 1.0, l3 = 2.0}"))
    assert "model.internal_params.loss.huber.delt: not a parameter of loss 'huber'; did you mean 'delta'" \
        in fails(good.replace("lr = 3e-3", "lr = 3e-3\nloss = {huber = {weight = 1.0, delt = 2}}"))
    csv_text = arrays_toml(regression_data, tmp_path / "Results", kind="csv")
    assert "data.training_sets.points.target_columns: train.csv has no column 'wav'; did you mean 'wave'?" \
        in fails(csv_text.replace('"wave", "bowl"]', '"wav", "bowl"]', 1))
    assert "data.training_sets.points.file: file not found" in fails(
        good.replace(str(regression_data["train_npz"]), str(tmp_path / "nope.npz")))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    assert "data.training_sets.points.file: cannot read" in fails(
        good.replace(str(regression_data["train_npz"]), str(broken)))
    assert "training.trackers: unknown tracker 'tensorbord'; did you mean 'tensorboard'?" in fails(
        good.replace('gpu = "off"', 'gpu = "off"\ntrackers = ["tensorbord"]'))
    assert "task: unknown task 'regresion'; did you mean 'regression'?" in fails(
        good.replace('task = "regression"', 'task = "regresion"'))
    assert "target_columns: 'x1' is an input column too" in fails(
        csv_text.replace('target_columns = ["wave", "bowl"]', 'target_columns = ["x1", "bowl"]', 1))
    assert "data.training_sets.points.type: expected a string, got a boolean" in fails(
        good.replace('type = "arrays"', "type = false", 1))
    nan = tmp_path / "nan.npz"
    np.savez(nan, inputs=np.full((4, 6), np.nan, np.float32), targets=np.zeros((4, 2)))
    assert "are not all finite" in fails(good.replace(str(regression_data["train_npz"]), str(nan)))


@pytest.mark.slow
def test_builtin_blur_quickstart_beats_the_mean_predictor(tmp_path):
    """The README's regression quickstart, shortened: the built-in set as the quickstart builds
    it, the quickstart's model, fewer epochs."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "args" / "blur_regression.toml").read_text()
    text = text.replace("num_epochs = 20", "num_epochs = 14").replace(
        'experiment_save_loc = "../Results"', f'experiment_save_loc = "{tmp_path / "Results"}"')
    text = text.replace("[data]", f'[data]\ncache_dir = "{tmp_path / "cache"}"')
    path = tmp_path / "blur.toml"
    path.write_text(text.replace('gpu = "off"', 'gpu = "off"\naim_track = false\nlogging = "text"'))
    _train(path)
    node = tmp_path / "Results" / "blur_regression"
    summary = rows(node)
    baseline = list(csv.DictReader(open(node / "result_outputs" / "mean_predictor_baseline.csv")))
    best = min(summary, key=lambda r: float(r["val-RMSE"]))
    assert float(best["val-RMSE"]) < 0.8 * float(baseline[0]["RMSE"])
    assert float(best["val-R2"]) > 0.3


def test_review_cases_are_one_line_errors_or_exact(write, tmp_path, regression_data):
    """Targets with a large mean and small spread keep their digits; a fork whose data changes
    the model's inputs is refused before any write; bad plateau monitors and loss values are
    config errors."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = 1e6 + 0.01 * x[:, :2].astype(np.float64)
    big = tmp_path / "big.npz"
    np.savez(big, inputs=x, targets=y)
    text = arrays_toml(regression_data, tmp_path / "Results", epochs=1)
    text = text.replace(str(regression_data["train_npz"]), str(big)).replace(
        str(regression_data["valid_npz"]), str(big))
    (tmp_path / "big.toml").write_text(text)
    _train(tmp_path / "big.toml", "--experiment_name", "big")
    row = rows(tmp_path / "Results" / "big")[0]
    assert row["val-R2"] not in ("", "nan") and row["val-Pearson"] not in ("", "nan")
    baseline = list(csv.DictReader(open(tmp_path / "Results" / "big" / "result_outputs" /
                                        "mean_predictor_baseline.csv")))
    assert abs(float(baseline[0]["R2"])) < 1e-9  # the training mean on the training set

    def fails(path: Path, *flags: str) -> str:
        before = sorted(p for p in (tmp_path / "Results").rglob("*"))
        with pytest.raises(ConfigError) as info:
            prepare(load_config(path, {k.lstrip("-"): v for k, v in zip(flags[::2], flags[1::2])}))
        assert sorted(p for p in (tmp_path / "Results").rglob("*")) == before
        return str(info.value)

    _train(write(epochs=2))
    three = np.load(regression_data["train_npz"])
    wider = tmp_path / "wider.npz"
    np.savez(wider, inputs=np.concatenate([three["inputs"], three["inputs"][:, :1]], axis=1),
             targets=three["targets"])
    fork = tmp_path / "fork.toml"
    fork.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=3).replace(
        str(regression_data["train_npz"]), str(wider)).replace(
        str(regression_data["valid_npz"]), str(wider)))
    cfg = load_config(fork, {"continue_from_epoch": 1, "new_branch": True})
    with pytest.raises(ConfigError, match="checkpoint's model was built for"):
        prepare(cfg)
    assert not (tmp_path / "Results" / "reg" / "branch_epoch_1").exists()
    renorm = tmp_path / "renorm.toml"
    renorm.write_text(arrays_toml(regression_data, tmp_path / "Results", epochs=3).replace(
        "[data]", "[data]\nnormalize_targets = false"))
    with pytest.raises(ConfigError, match="data.normalize_targets: the architecture cannot change"):
        prepare(load_config(renorm, {"continue_from_epoch": 1, "new_branch": True}))
    plateau = write(name="plateau.toml", experiment="plateau", extra_params='scheduler = "reduce_on_plateau"\n'
                                                      'scheduler_params = {monitor = "RMSE_x"}')
    assert "scheduler_params.monitor: expected a summary column, got 'RMSE_x'" in fails(plateau)
    eps = write(name="eps.toml", experiment="eps", extra_params='loss = {charbonnier = {eps = "x"}}')
    assert "model.internal_params.loss.charbonnier.eps: expected a number > 0, got 'x'" in fails(eps)


def test_fixed_shape_model_on_other_eval_sizes_is_refused(tmp_path, regression_data):
    d = regression_data
    path = tmp_path / "mlp_img.toml"
    path.write_text(textwrap.dedent(f"""\
        experiment = "mlp_img"
        experiment_save_loc = "{tmp_path / 'Results'}"
        task = "regression"
        [training]
        gpu = "off"
        [model]
        name = "mlp"
        [data.training_sets.blur]
        type = "images_with_targets"
        images = "{d['train_images']}"
        targets = "{d['train_targets']}"
        crop = 24
        [data.eval_sets.blur_valid]
        type = "images_with_targets"
        images = "{d['valid_images']}"
        targets = "{d['valid_targets']}"
        """))
    with pytest.raises(ConfigError, match=r"data.eval_sets.blur_valid: mlp takes inputs of the "
                                          r"training shape \[3, 24, 24\], these samples are "
                                          r"\[3, 32, 32\]"):
        prepare(load_config(path))
    path.write_text(path.read_text() + "crop = 24\n")  # the same crop: accepted
    assert prepare(load_config(path)).task.model_kwargs()["input_shape"] == [3, 24, 24]


@pytest.mark.slow
def test_a_model_drawing_random_numbers_continues_exactly(write, tmp_path):
    """Dropout draws from the global RNG every step: a continue (from an epoch, and from a
    Ctrl+C mid-epoch checkpoint) must hand it the stream the uninterrupted run had, and save
    the same RNG state at its next checkpoint."""
    arch = "hidden_sizes = [32, 32]\ndropout = 0.3"
    path = write(epochs=3, arch=arch)
    assert train_main(["--parameters", str(path), "--experiment_name", "whole"]) == 0
    assert train_main(["--parameters", str(path), "--experiment_name", "cut",
                       "--num_epochs", "1"]) == 0
    assert train_main(["--parameters", str(path), "--experiment_name", "cut",
                       "--continue_from_epoch", "last"]) == 0
    whole, cut = tmp_path / "Results" / "whole", tmp_path / "Results" / "cut"
    assert no_timing(rows(cut)) == no_timing(rows(whole))
    for epoch in (2, 3):
        assert same_weights(weights(cut, epoch), weights(whole, epoch))
        a = load_checkpoint(whole / "saved_models" / f"epoch_{epoch}.pt")["rng"]
        b = load_checkpoint(cut / "saved_models" / f"epoch_{epoch}.pt")["rng"]
        assert torch.equal(a["torch"], b["torch"]), epoch
