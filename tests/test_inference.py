"""Using trained models (rumpy/inference): load_experiment, predict, tiling and self-ensemble,
and `rumpy eval` / `eval_sisr`, whose numbers must equal the training-time validation of the same
epoch on the same set. Models are trained for real (tests/inference_nodes.py) and their training
data deleted before any of this runs."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_nodes import image_regression_node, regression_node, sr_nodes

import rumpy
from rumpy.cli.main import main as rumpy_main
from rumpy.data.images import read_rgb, to_float
from rumpy.cli.evaluate import eval_sisr_main
from rumpy.inference.load import InferenceError, load_experiment, saved_epochs
from rumpy.inference.runner import Runner

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def sr(tmp_path_factory) -> dict:
    return sr_nodes(tmp_path_factory)


@pytest.fixture(scope="session")
def reg(tmp_path_factory) -> dict:
    return regression_node(tmp_path_factory)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _summary(node: Path) -> dict[int, dict]:
    return {int(r["epoch"]): r for r in _csv(node / "result_outputs" / "summary.csv")}


# -- load_experiment ------------------------------------------------------------------------------
def test_load_experiment_picks_best_last_and_numbered_epochs(sr):
    root = sr["root"]
    summary = _summary(root)
    best = max(summary, key=lambda e: float(summary[e]["val-PSNR"]))
    model = rumpy.load_experiment(root)  # the top-level API; 'best' by val-PSNR
    info = model.rumpy
    assert not model.training and info.epoch == best and info.task == "sisr"
    assert info.scale == 2 and info.pre_upsampled is False and info.model_name == "edsr"
    assert info.summary_row["val-PSNR"] == float(summary[best]["val-PSNR"])
    assert load_experiment(root, epoch="last").rumpy.epoch == 2
    one = load_experiment(root, epoch=1)
    assert one.rumpy.checkpoint == root / "saved_models" / "epoch_1.pt"
    from rumpy.core.checkpoint import load_checkpoint
    saved = load_checkpoint(root / "saved_models" / "epoch_1.pt")["parts"]["model"]
    assert all(torch.equal(v, saved[k]) for k, v in one.state_dict().items())


def test_a_branch_loads_its_inherited_epochs_through_its_parent(sr):
    branch, root = sr["branch"], sr["root"]
    epochs = saved_epochs(rumpy.inference.load.find_node(branch))
    node = rumpy.inference.load.find_node(branch)
    assert node.rel == "warm" and node.root == root
    assert epochs == {e: node.checkpoint_for(e) for e in (1, 2, 3)}
    inherited = load_experiment(branch, epoch=1).rumpy
    assert inherited.checkpoint == root / "saved_models" / "epoch_1.pt"
    last = load_experiment(branch, epoch="last").rumpy
    assert last.epoch == 3 and last.checkpoint == branch / "saved_models" / "epoch_3.pt"


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_bad_nodes_and_epochs_are_one_line_errors(sr, tmp_path, caplog):
    with pytest.raises(InferenceError, match="no such run folder"):
        load_experiment(tmp_path / "nope")
    with pytest.raises(InferenceError, match=r"no checkpoint of epoch 7 \(saved epochs: 1, 2\)"):
        load_experiment(sr["root"], epoch=7)
    with pytest.raises(InferenceError, match="expected 'best', 'last' or an epoch"):
        load_experiment(sr["root"], epoch="first")
    assert rumpy_main(["eval", str(tmp_path)]) == 2
    assert _errors(caplog) == [f"{tmp_path}: not a run folder (no config.toml); give "
                               f"Results/<experiment> or a branch folder inside it"]
    # as a user runs it: one line on stderr, exit status 2, no traceback
    proc = subprocess.run([str(BIN / "rumpy"), "eval", str(sr["root"]), "--epoch", "9"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        f"ERROR   {sr['root']} has no checkpoint of epoch 9 (saved epochs: 1, 2)")


# -- predict ---------------------------------------------------------------------------------
def test_predict_sr_equals_what_validation_scores(sr):
    model = load_experiment(sr["root"], epoch=2)
    lr_path = sr["eval_lr"] / "0001.png"
    out = rumpy.predict(model, lr_path)
    assert out.dtype == np.uint8 and out.shape == (40, 40, 3)
    assert np.array_equal(rumpy.predict(model, read_rgb(lr_path)), out)
    both = rumpy.predict(str(sr["root"]), [lr_path, read_rgb(lr_path)], epoch=2)
    assert len(both) == 2 and all(np.array_equal(b, out) for b in both)
    # the image `rumpy eval --save-images` saves is the 8-bit output the metrics scored
    assert rumpy_main(["eval", str(sr["root"]), "--epoch", "2", "--save-images"]) == 0
    saved = read_rgb(sr["root"] / "eval" / "epoch_2" / "chelsea" / "0001.png")
    assert np.array_equal(saved, out)


def test_tiled_inference_equals_whole_image_inference(sr):
    model = load_experiment(sr["root"], epoch=2)
    from skimage import data
    lr = np.ascontiguousarray(data.astronaut()[100:150, 180:236])   # 50 x 56 LR
    x = to_float(torch.from_numpy(lr).permute(2, 0, 1)[None])
    whole = Runner(model, model.rumpy).infer(x)
    # edsr with 1 block: receptive-field radius 5.5 LR pixels, inside an overlap of 6
    for tile, overlap in ((16, 6), (20, 8), (7, 12)):
        tiled = Runner(model, model.rumpy, tile=tile, overlap=overlap).infer(x)
        assert (tiled - whole).abs().max() <= 1e-6, (tile, overlap)
    short = Runner(model, model.rumpy, tile=16, overlap=2).infer(x)
    assert (short - whole).abs().max() > 1e-4  # too little context: the test can fail
    # after rounding to 8 bits, a 1e-7 difference can tip a value sitting on .5 by one level
    a = rumpy.predict(model, lr, tile=16, tile_overlap=8).astype(int)
    b = rumpy.predict(model, lr).astype(int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3


def test_self_ensemble_averages_the_eight_flips_and_rotations(sr):
    model = load_experiment(sr["root"], epoch=2)
    x = to_float(torch.from_numpy(read_rgb(sr["coffee_lr"] / "0001x2.png")).permute(2, 0, 1)[None])
    with torch.no_grad():
        expected = sum(torch.rot90(model(torch.rot90(x.flip(-1) if f else x, k, (-2, -1))),
                                   -k, (-2, -1)).flip(-1) if f else
                       torch.rot90(model(torch.rot90(x, k, (-2, -1))), -k, (-2, -1))
                       for k in range(4) for f in (False, True)) / 8
    got = Runner(model, model.rumpy, ensemble=True).infer(x)
    assert (got - expected).abs().max() < 1e-6
    assert (got - model(x)).abs().max() > 1e-3
    tiled = Runner(model, model.rumpy, ensemble=True, tile=10, overlap=8).infer(x)
    assert (tiled - got).abs().max() < 1e-6


def test_predict_regression_gives_original_units(reg):
    x, y = reg["valid"]
    model = load_experiment(reg["root"])
    info = model.rumpy
    assert info.target_names == ["wave", "line"] and info.model_kwargs == {
        "input_shape": [6], "num_outputs": 2}
    pred = rumpy.predict(model, x)
    assert pred.shape == (48, 2) and pred.dtype == np.float64
    # the per-sample predictions of training-time validation, in original units
    rows = _csv(reg["root"] / "result_outputs" / f"per_sample_epoch_{info.epoch}.csv")
    logged = np.array([[float(r["pred-wave"]), float(r["pred-line"])] for r in rows])
    assert np.abs(pred - logged).max() < 1e-9
    assert np.allclose(rumpy.predict(model, x[3]), pred[3])   # one sample -> (T,)
    with pytest.raises(InferenceError, match=r"takes samples of shape \[6\]"):
        rumpy.predict(model, x[:, :5])
    with pytest.raises(InferenceError, match="for image outputs"):
        rumpy.predict(model, x, tile=8)


# -- rumpy eval ----------------------------------------------------------------------------------
@pytest.mark.parametrize("epoch", [1, 2])
def test_sr_eval_equals_training_validation(sr, epoch, capsys):
    root = sr["root"]
    assert rumpy_main(["eval", str(root), "--epoch", str(epoch)]) == 0
    folder = root / "eval" / f"epoch_{epoch}"
    averages = {r["set"]: r for r in _csv(folder / "average_metrics.csv")}
    row = _summary(root)[epoch]
    for key in ("loss", "PSNR", "SSIM"):  # bit for bit: the CSVs hold exact float reprs
        assert averages["chelsea"][key] == row[f"val-{key}"]
        assert averages["coffee"][key] == row[f"val-coffee-{key}"]
    bicubic = {r["set"]: r for r in _csv(root / "result_outputs" / "bicubic_baseline.csv")}
    assert averages["coffee"]["bicubic-PSNR"] == bicubic["coffee"]["PSNR"]
    assert averages["chelsea"]["count"] == "2"
    per_image = _csv(root / "result_outputs" / f"per_image_epoch_{epoch}.csv")
    individual = (_csv(folder / "chelsea" / "individual_metrics.csv") +
                  _csv(folder / "coffee" / "individual_metrics.csv"))
    assert individual == per_image
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("chelsea (2 images") and "bicubic" in out[0]


def test_commands_are_installed():
    for cmd in ("eval_sisr", "rumpy"):
        proc = subprocess.run([str(BIN / cmd), *(["eval"] if cmd == "rumpy" else []), "--help"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "--self-ensemble" in proc.stdout and "--tile" in proc.stdout


def test_eval_of_a_branch_and_eval_sisr(sr):
    branch = sr["branch"]
    assert eval_sisr_main([str(branch), "--epoch", "3"]) == 0
    averages = {r["set"]: r for r in _csv(branch / "eval" / "epoch_3" / "average_metrics.csv")}
    assert averages["chelsea"]["PSNR"] == _summary(branch)[3]["val-PSNR"]
    # an inherited epoch is evaluated from the parent's checkpoint, into the branch's folder
    assert eval_sisr_main([str(branch), "--epoch", "1"]) == 0
    averages = {r["set"]: r for r in _csv(branch / "eval" / "epoch_1" / "average_metrics.csv")}
    assert averages["chelsea"]["SSIM"] == _summary(sr["root"])[1]["val-SSIM"]


def test_eval_with_a_data_toml_and_its_errors(sr, tmp_path, caplog):
    root = sr["root"]
    (tmp_path / "sub").mkdir()
    data = tmp_path / "sub" / "tests.toml"  # relative paths resolve against its folder
    (tmp_path / "coffee").symlink_to(sr["coffee_lr"].parent, target_is_directory=True)
    data.write_text('[data]\neval_batch_size = 2\n\n[data.eval_sets.cups]\nname = "cups"\n'
                    f'lr = "../coffee/{sr["coffee_lr"].name}"\nhr = "../coffee/HR"\ncutoff = 1\n')
    assert rumpy_main(["eval", str(root), "--epoch", "2", "--data", str(data)]) == 0
    folder = root / "eval" / "epoch_2"
    averages = {r["set"]: r for r in _csv(folder / "average_metrics.csv")}
    assert "cups" in averages and "chelsea" in averages  # rows of earlier evaluations kept
    cups = _csv(folder / "cups" / "individual_metrics.csv")
    coffee = _csv(root / "result_outputs" / "per_image_epoch_2.csv")
    assert [r["PSNR"] for r in cups] == [r["PSNR"] for r in coffee if r["set"] == "coffee"][:1]
    caplog.clear()
    data.write_text('[data.eval_sets.cups]\nlr_dir = "x"\n')
    assert rumpy_main(["eval", str(root), "--data", str(data)]) == 2
    data.write_text('[data]\nbatch_size = 4\n[data.eval_sets.cups]\nlr = "x"\nhr = "y"\n')
    assert rumpy_main(["eval", str(root), "--data", str(data)]) == 2
    data.write_text('[data.eval_sets.cups]\nlr = "nowhere"\nhr = "../coffee/HR"\n')
    assert rumpy_main(["eval", str(root), "--data", str(data)]) == 2
    err = _errors(caplog)
    assert len(err) == 3
    assert f"{data}: data.eval_sets.cups.lr_dir: unknown key; did you mean 'lr'?" in err[0]
    assert "data.batch_size: unknown key" in err[1] and "eval_batch_size" in err[1]
    assert "data.eval_sets.cups.lr: folder not found" in err[2]


def test_eval_sisr_refuses_a_regression_node_and_regression_refuses_images(reg, caplog):
    assert eval_sisr_main([str(reg["root"])]) == 2
    assert rumpy_main(["eval", str(reg["root"]), "--save-images"]) == 2
    err = "\n".join(_errors(caplog))
    assert "is a regression model; use `rumpy eval`" in err and "--save-images is for" in err


def test_regression_eval_equals_training_validation(reg):
    root = reg["root"]
    for epoch in (2, 3):
        assert rumpy_main(["eval", str(root), "--epoch", str(epoch)]) == 0
        average = _csv(root / "eval" / f"epoch_{epoch}" / "average_metrics.csv")[0]
        row = _summary(root)[epoch]
        for key in ("loss", "MAE", "RMSE", "R2", "Pearson", "RMSE-wave", "R2-line"):
            assert average[key] == row[f"val-{key}"], key
        baseline = _csv(root / "result_outputs" / "mean_predictor_baseline.csv")[0]
        assert average["mean_predictor-RMSE"] == baseline["RMSE"]
        assert _csv(root / "eval" / f"epoch_{epoch}" / "held_out" / "individual_metrics.csv") == \
            _csv(root / "result_outputs" / f"per_sample_epoch_{epoch}.csv")


def test_image_regression_eval_and_predict(tmp_path_factory):
    node = image_regression_node(tmp_path_factory)
    root = node["root"]
    assert rumpy_main(["eval", str(root), "--epoch", "2"]) == 0
    average = _csv(root / "eval" / "epoch_2" / "average_metrics.csv")[0]
    assert average["RMSE-noise"] == _summary(root)[2]["val-RMSE-noise"]
    rows = _csv(root / "result_outputs" / "per_sample_epoch_2.csv")
    images = [node["valid"] / "images" / r["sample"] for r in rows]
    pred = rumpy.predict(str(root), images, epoch=2)
    logged = np.array([[float(r["pred-brightness"]), float(r["pred-noise"])] for r in rows])
    assert pred.shape == (8, 2) and np.abs(pred - logged).max() < 1e-6


def test_a_loaded_model_takes_the_task_batch_dict(sr):
    """load_experiment's model accepts a batch as the data sets give it (uint8 LR under 'lr'),
    converted by the task exactly as in validation, as well as a prepared tensor."""
    from skimage import data

    model = load_experiment(sr["root"], epoch=2)
    lr = torch.from_numpy(np.ascontiguousarray(data.astronaut()[:20, :24])).permute(2, 0, 1)[None]
    with torch.no_grad():
        assert torch.equal(model({"lr": lr}), model(to_float(lr)))
    with pytest.raises(InferenceError, match="no such run folder, nor a run of that name"):
        load_experiment("nothing_here", save_loc=sr["root"].parent)
    named = load_experiment(sr["root"].name, epoch=1, save_loc=sr["root"].parent)
    assert named.rumpy.path == sr["root"] and named.rumpy.epoch == 1
