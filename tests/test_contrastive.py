"""Contrastive degradation encoders (issue 22, item 4) and blind SR on them: task 'contrastive'
trains SupMoCo/MoCo/WeakCon on online degradations of photo crops, continues exactly (the
momentum encoder and the queue are in the checkpoint), scores its eval set by kNN accuracy and
writes the encodings; ContrastiveBlindQRCAN trains on a frozen encoder from a node, and eval and
export-model run blind without that node. The original's supmoco_standard.toml and
rcan-supmoco.toml train with only data paths and sizes changed (item 7)."""
from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import no_timing, rows, stop_after
from skimage import data as photos

from rumpy.catalog import load_config
from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.config import ConfigError
from rumpy.core.checkpoint import load_checkpoint
from rumpy.data.contrastive import Labeller
from rumpy.data.images import write_png
from rumpy.training import trainer

# the iso blur of the original's lr_iso_blur_only, kernels made small for 32-pixel HR crops
BLUR = """\
kernel_range = ["iso"]
sigma_x_range = [0.2, 3.0]
sigma_y_range = [0.2, 3.0]
use_kernel_code = true
request_pca_kernels = false
kernel_size = 7
"""


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory) -> dict:
    """8 HR photo tiles (64 px) and the same tiles blurred and downsampled x4 by rumpy degrade
    (the eval set: LR images with their degradation_metadata.csv)."""
    root = tmp_path_factory.mktemp("contrastive")
    hr = root / "HR"
    hr.mkdir()
    n = 0
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(photos, name)()[..., :3]
        for k in range(2):
            n += 1
            write_png(hr / f"{n:04d}.png",
                      np.ascontiguousarray(img[40 * k: 40 * k + 64, 60 * k: 60 * k + 64]))
    (root / "blur.toml").write_text('pipeline = [["realesrganblur", "b"], ["downsample", "d"]]\n'
                                    "[deg_configs.d]\nscale = 4\n[deg_configs.b]\n" + BLUR)
    assert rumpy_main(["degrade", "--hr", str(hr), "--out", str(root / "lr_iso"),
                       "--pipeline_config", str(root / "blur.toml")]) == 0
    return {"hr": hr, "lr": root / "lr_iso", "root": root}


def native(photo_set: dict, tmp_path: Path, *, model: str = "supmoco", epochs: int = 3,
           params: str = "") -> Path:
    text = f"""\
experiment = "{model}"
experiment_save_loc = "{tmp_path / 'Results'}"
task = "contrastive"

[training]
num_epochs = {epochs}
gpu = "off"
seed = 3
output_interval_s = 0
aim_track = false

[model]
name = "{model}"
[model.internal_params]
lr = 1e-3
crop_count = 3
queue_size = 16
{params}

[data]
batch_size = 4
dataloader_threads = 0

[data.training_sets.tiles]
hr = "{photo_set['hr']}"
crop = 8
request_crops = 3
[data.training_sets.tiles.degradations]
pipeline = [["realesrganblur", "b"], ["downsample", "default"]]
[data.training_sets.tiles.degradations.deg_configs.b]
{BLUR}
[data.eval_sets.iso]
lr = "{photo_set['lr']}"
degradation_metadata = "on_site"
"""
    path = tmp_path / f"{model}.toml"
    path.write_text(text)
    return path


def train(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def parts(node: Path, epoch: int) -> dict:
    return load_checkpoint(node / "saved_models" / f"epoch_{epoch}.pt")["parts"]


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
def test_supmoco_trains_scores_and_continues_exactly(photo_set, tmp_path, monkeypatch):
    path = native(photo_set, tmp_path, epochs=3,
                  params='labelling_strategy = "triple_precision"\ndata_type = ["blur"]')
    assert train(path) == 0
    whole = tmp_path / "Results" / "supmoco"
    rs = rows(whole)
    assert all(math.isfinite(float(r["train-loss"])) for r in rs)
    assert all(0 <= float(r["val-knn_accuracy"]) <= 1 for r in rs)
    # best by train-loss, the task's default (the original's best_load_metric)
    best = min(rs, key=lambda r: float(r["train-loss"]))["epoch"]
    assert load_checkpoint(whole / "saved_models" / "best.pt")["epoch"] == int(best)
    # the momentum encoder and the queue (keys, pointer, classes) are in the checkpoint
    model = parts(whole, 3)["model"]
    assert {"queue", "queue_ptr", "queue_labels"} <= set(model)
    assert any(k.startswith("encoder_k.E.0.") for k in model)
    # 2 steps of 4 images an epoch, one key each: 24 keys through a queue of 16
    assert int(model["queue_ptr"]) == 24 % 16
    assert (model["queue_labels"] < 63).all()   # every slot holds a key of a real class
    assert not torch.equal(model["encoder_k.E.0.weight"], model["encoder_q.E.0.weight"])
    # the momentum encoder gets no optimizer state
    assert len(parts(whole, 3)["optimizer"]["state"]) == \
        sum(1 for k in model if k.startswith("encoder_q.") and
            not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    # the encodings of the eval set: a class, whether the neighbour agreed, a 2-D map
    with open(whole / "result_outputs" / "encodings_epoch_3.csv", newline="") as f:
        enc = list(csv.DictReader(f))
    assert [e["image"] for e in enc] == [f"{i:04d}" for i in range(1, 9)]
    agree = np.mean([int(e["neighbour_agrees"]) for e in enc])
    assert agree == pytest.approx(float(rs[2]["val-knn_accuracy"]))
    assert (whole / "result_outputs" / "epoch_3_samples" / "iso_encodings_pca.png").is_file()

    # split at an epoch; stopped mid-epoch 2 (a Ctrl+C after 3 steps), continued: the same
    assert train(path, "--experiment_name", "split", "--num_epochs", "2") == 0
    assert train(path, "--experiment_name", "split", "--continue_from_epoch", "last") == 0
    monkeypatch.setattr(trainer, "StopRequest", stop_after(3))
    assert train(path, "--experiment_name", "halted") == 130
    monkeypatch.undo()
    assert train(path, "--experiment_name", "halted", "--continue_from_epoch", "last") == 0
    for name in ("split", "halted"):
        node = whole.parent / name
        assert no_timing(rows(node)) == no_timing(rows(whole)), name
        for key in ("model", "loop", "task"):
            assert equal(parts(node, 3)[key], parts(whole, 3)[key]), (name, key)
        # (a continued optimizer's param_groups also carry initial_lr: compare the moments)
        assert equal(parts(node, 3)["optimizer"]["state"], parts(whole, 3)["optimizer"]["state"])

    # a fork with another learning rate starts from the queue of its epoch
    assert train(path, "--continue_from_epoch", "2", "--new_branch",
                 "model.internal_params.lr=1e-4") == 0
    (branch,) = [p for p in whole.iterdir() if p.is_dir() and (p / "config.toml").is_file()]
    inherited = [{k: v for k, v in r.items() if k != "inherited"} for r in rows(branch)[:2]]
    assert inherited == [{k: v for k, v in r.items() if k != "inherited"}
                         for r in rows(whole)[:2]]
    assert float(rows(branch)[2]["learning-rate"]) == pytest.approx(1e-4)

    # rumpy eval scores the same as validation; export-model writes the encoder alone
    from rumpy.inference.evaluate import evaluate_node
    report = evaluate_node(whole, epoch=3)
    assert report.sets[0].means["knn_accuracy"] == pytest.approx(float(rs[2]["val-knn_accuracy"]))
    assert rumpy_main(["export-model", str(whole), "--epoch", "3"]) == 0
    exported = torch.jit.load(str(whole / "export" / "epoch_3" / "model.pt"))
    assert exported(torch.rand(1, 3, 16, 16)).shape == (1, 256)


def test_labels_are_the_originals_classes():
    """Mixed-radix classes: noise (magnitude, grey, gaussian), compression, blur (family,
    sigma_x, sigma_y), in the original's order and bins."""
    blur = Labeller(["blur"], "triple_precision",
                    {"realesrganblur-kernel_type": [0, 1], "realesrganblur-sigma_x": [0.2, 3.0],
                     "realesrganblur-sigma_y": [0.2, 3.0]})
    assert blur.num_classes == 63 and blur.vector_size == 2
    record = {"realesrganblur-kernel_type": "aniso", "realesrganblur-sigma_x": 2.9,
              "realesrganblur-sigma_y": 1.0}
    assert blur.label(record) == 1 + 2 * 7 + 0 * 21   # aniso, sigma_x high, sigma_y low
    record["realesrganblur-kernel_type"] = 1.0         # a CSV's kernel code
    assert blur.label(record) == 15
    both = Labeller(["noise", "compression"], "default",
                    {"realesrgannoise-gaussian_noise_sigma": [1, 30],
                     "realesrgannoise-poisson_noise_scale": [0.05, 3],
                     "realesrgannoise-gray_noise": [0, 1], "jpegcompress-jpeg_quality": [30, 95]})
    assert both.decisions() == [2, 2, 2] and both.num_classes == 8
    noisy = {"realesrgannoise-gaussian_noise_sigma": 0.0, "realesrgannoise-poisson_noise_scale": 2,
             "realesrgannoise-gray_noise": 1, "jpegcompress-jpeg_quality": 90}
    assert both.label(noisy) == 1 * 1 + 0 * 2 + 1 * 4   # grey, poisson, high quality
    assert both.vector(noisy) == pytest.approx([0.0, (2 - 0.05) / 2.95, 60 / 65, 0.0])


@pytest.mark.parametrize("model", ["mococontrastive", "weakcon"])
def test_moco_and_weakcon_train(photo_set, tmp_path, model):
    params = 'data_type = ["blur"]' if model == "weakcon" else ""
    assert train(native(photo_set, tmp_path, model=model, epochs=1, params=params)) == 0
    node = tmp_path / "Results" / model
    (row,) = rows(node)
    assert math.isfinite(float(row["train-loss"])) and float(row["val-knn_accuracy"]) >= 0
    weights = parts(node, 1)["model"]
    if model == "weakcon":   # each queued key's degradation vector (sigma_x, sigma_y)
        assert weights["queue_vectors"].shape == (2, 16)
        assert weights["queue_vectors"][:, :8].abs().sum() > 0
    else:
        assert "queue_labels" not in weights


@pytest.mark.parametrize("old, new, key, message", [
    ("request_crops = 3", "request_crops = 2", "request_crops", "expected 3 .*crop_count"),
    ("queue_size = 16", "queue_size = 15", "data.batch_size", "does not divide the queue"),
    ("queue_size = 16", 'queue_size = 16\ndata_type = ["noise"]', "data_type",
     "no realesrgannoise step"),
    ("queue_size = 16", "queue_size = 16\ndropdown = 8", "dropdown", "dropdown MLP .* not ported"),
    ("queue_size = 16", 'queue_size = 16\nmodel_name = "resnet18"\ndata_type = ["blur"]',
     "model.internal_params",
     "only 'default'"),
])
def test_bad_settings_refused_before_writing(photo_set, tmp_path, old, new, key, message):
    path = native(photo_set, tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError, match=message) as err:
        from rumpy.training.setup import prepare
        prepare(load_config(path))
    assert key in str(err.value)
    assert train(path) == 2
    assert not (tmp_path / "Results").exists()


# -- the original tool's configs (Documentation/sample_config_files/contrastive_*) --------------
SUPMOCO_STANDARD = """\
experiment = "supmoco_iso_standard"  # experiment name
experiment_save_loc = '{results}'  # experiment save location

[data]
batch_size = 4  # data batch size
dataloader_threads = 4  # parallel threads to use to speed up data processing
drop_last_training_batch = true # drop last training batch (incompatible with DASR encoder system)
task_type = 'classification'

[data.online_pipeline]
pipeline = [ [ "realesrganblur", "b-config",], [ "downsample", "d-config",]]

[data.online_pipeline.d-config]
scale=4
restrict_metadata = true

[data.online_pipeline.b-config]
device = 0
pca_batch_len = 10000
kernel_range = [ "iso"]
pca_length = 100
request_full_kernels = false
request_pca_kernels = false
request_kernel_metadata = true
use_kernel_code = true
normalize_metadata = true
sigma_x_range = [ 0.2, 3.0,]
sigma_y_range = [ 0.2, 3.0,]

[data.training_sets]
[data.training_sets.data_1]
name = 'div2k'
hr = '{hr}'
crop = 8
request_crops = 4
online_degradations = true

[data.training_sets.data_2]
name = 'flickr2k'
hr = '{hr}'
crop = 8
request_crops = 4
online_degradations = true

[data.eval_sets]
[data.eval_sets.data_1]
lr = '{lr}'
degradation_metadata = 'on_site'

[model]
name = 'supmoco'  # model architecture name
[model.internal_params] # parameters specific for each model
lr = 1e-3 # learning rate
crop_count = 4
model_name='default'
labelling_strategy = 'triple_precision'
data_type = ['blur']

[training]
gpu = 'single' # one of multi, single, off
sp_gpu = 0 # inital gpu to use
seed = 8  # random seed
epoch_cutoff = 1500  # epochs requested
metrics = ['PSNR', 'SSIM']  # metrics to calculate on validation set
id_source = 'standard'  # location of ids to use for face recognition metrics
logging = 'visual' # one of visual or text
best_load_metric = 'train-loss'
early_stopping_metric = 'train-loss'
cleanup_metric = 'train-loss'
run_eval = true  # turn on contrastive eval system
"""

RCAN_SUPMOCO = """\
experiment = "rcan_supmoco"  # experiment name
experiment_save_loc = '{results}'  # experiment save location

[data]
batch_size = 4  # data batch size
dataloader_threads = 4  # parallel threads to use to speed up data processing

[data.training_sets]
[data.training_sets.data_1]
name = 'div2k'
lr = '{lr}'
hr = '{hr}'
degradation_metadata = 'on_site'
crop = 4
random_augment = true
ignore_degradation_location = true
[data.training_sets.data_2]
name = 'flickr2k'
lr = '{lr}'
hr = '{hr}'
degradation_metadata = 'on_site'
crop = 4
random_augment = true
ignore_degradation_location = true
[data.eval_sets]
[data.eval_sets.data_1]
name = 'div2k'
lr = '{lr}'
hr = '{hr}'
degradation_metadata = 'on_site'
ignore_degradation_location = true

[model]
name = 'ContrastiveBlindQRCAN'  # model architecture name
[model.internal_params]
scale = 4
lr = 0.0001
pre_trained_encoder_weights = "{weights}"
scheduler = "cosine_annealing_warm_restarts"
selective_meta_blocks = [ true, false, false, false, false, false, false, false, false, false,]
include_q_layer = true
style = "standard"
num_q_layers_inner_residual = 1

[model.internal_params.scheduler_params]
t_mult = 1
restart_period = 125000
lr_min = 1e-7
scheduler = 'cosine_annealing_warm_restarts'

[training]
gpu = 'single' # one of multi, single, off
sp_gpu = 0 # inital gpu to use
seed = 8  # random seed
epoch_cutoff = 1000  # epochs requested
metrics = ['PSNR', 'SSIM']  # metrics to calculate on validation set
id_source = 'standard'  # location of ids to use for face recognition metrics
logging = 'visual' # one of visual or text
"""

SMALL = ("num_q_layers_inner_residual = 1",
         "num_q_layers_inner_residual = 1\nn_feats = 16\nn_resgroups = 2\nn_resblocks = 2")


@pytest.mark.slow
def test_original_supmoco_then_rcan_supmoco(photo_set, tmp_path):
    """supmoco_standard.toml and rcan-supmoco.toml as shipped but for data paths, crops, batch
    size, the SR network's size and --gpu off; rcan-supmoco's encoder is the supmoco node."""
    results = tmp_path / "Results" / "SISR"
    enc_path = tmp_path / "supmoco_standard.toml"
    enc_path.write_text(SUPMOCO_STANDARD.format(results=results, **photo_set))
    cfg = load_config(enc_path)
    assert cfg.task == "contrastive" and cfg.training.num_epochs == 1500
    assert cfg.training.best_load_metric == "train-loss"
    assert cfg.data.training_sets["data_1"].degradations["pipeline"][0] == ["realesrganblur",
                                                                            "b-config"]
    assert train(enc_path, "--gpu", "off", "--num_epochs", "1") == 0
    encoder = results / "supmoco_iso_standard"
    (row,) = rows(encoder)
    assert math.isfinite(float(row["train-loss"]))

    sr_path = tmp_path / "rcan-supmoco.toml"
    text = RCAN_SUPMOCO.format(results=results, weights=encoder, **photo_set)
    # as shipped it builds the original's network: 10 groups of 20 blocks, meta-attention only
    # in the first block of the first group (trained here made small)
    from rumpy.models import build_model
    arch = load_config(_write(sr_path, text)).model.internal_params.arch
    big = build_model("contrastiveblindqrcan", arch, scale=4)
    assert len(big.G.body) == 10 and len(big.G.body[0].body) == 20
    assert {n.split(".q_node")[0] for n in big.state_dict() if ".q_node." in n} == \
        {"G.body.0.body.0"}
    text = text.replace(*SMALL).replace("true, false, false, false, false, false, false, false, "
                                        "false, false,", "true, false,")
    assert train(_write(sr_path, text), "--gpu", "off", "--num_epochs", "1") == 0
    node = results / "rcan_supmoco"
    (row,) = rows(node)
    assert math.isfinite(float(row["val-PSNR"]))
    # the frozen encoder: the supmoco node's query encoder, untouched (batch norm included),
    # without optimizer state
    p = parts(node, 1)
    source = load_checkpoint(encoder / "saved_models" / "best.pt")["parts"]["model"]
    e = {k[2:]: v for k, v in p["model"].items() if k.startswith("E.")}
    assert e and all(torch.equal(v, source[f"encoder_q.{k}"]) for k, v in e.items())
    assert len(p["optimizer"]["state"]) == sum(1 for k, _ in _params(p["model"]) if
                                               k.startswith("G."))
    assert not any("encoder_k" in k or "queue" in k for k in p["model"])
    # eval and export run blind with the encoder node gone
    shutil.move(str(encoder), str(tmp_path / "elsewhere"))
    from rumpy.inference.evaluate import evaluate_node
    report = evaluate_node(node, epoch=1)
    assert report.sets[0].means["PSNR"] == pytest.approx(float(row["val-PSNR"]), abs=1e-9)
    assert rumpy_main(["export-model", str(node)]) == 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _params(state: dict):
    return [(k, v) for k, v in state.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]


@pytest.fixture(scope="module")
def encoder_node(photo_set, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("encoder")
    assert train(native(photo_set, tmp, epochs=2, params='data_type = ["blur"]')) == 0
    return tmp / "Results" / "supmoco"


def blind_config(photo_set, tmp_path: Path, weights: str) -> Path:
    text = RCAN_SUPMOCO.format(results=tmp_path / "Results", weights=weights, **photo_set)
    text = text.replace(*SMALL).replace("true, false, false, false, false, false, false, false, "
                                        "false, false,", "true, false,")
    text = text.replace("dataloader_threads = 4", "dataloader_threads = 0")
    return _write(tmp_path / "rcan-supmoco.toml", text)


def test_blind_model_trains_on_a_checkpoint_file(photo_set, encoder_node, tmp_path):
    """A checkpoint file works as the node does; the node's config records its absolute path."""
    path = blind_config(photo_set, tmp_path, str(encoder_node / "saved_models" / "epoch_1.pt"))
    assert train(path, "--gpu", "off", "--num_epochs", "1") == 0
    node = tmp_path / "Results" / "rcan_supmoco"
    assert str(encoder_node / "saved_models" / "epoch_1.pt") in (node / "config.toml").read_text()
    p = parts(node, 1)["model"]
    source = parts(encoder_node, 1)["model"]
    assert torch.equal(p["E.E.0.weight"], source["encoder_q.E.0.weight"])


@pytest.mark.parametrize("weights, message", [
    ("path_to_weights", "not found: .*path_to_weights; expected a contrastive encoder's node"),
    ("{sr}", "is a 'sisr' node .*expected a contrastive encoder's node"),
    ("{csv}", "degradation_metadata.csv is not a checkpoint torch can load; expected"),
    ("{sha}", r"epoch_1.pt.sha256 is not a checkpoint torch can load; expected"),
    ("", "missing: expected a contrastive encoder's node"),
])
def test_bad_encoder_weights_refused_before_writing(photo_set, encoder_node, tmp_path, weights,
                                                    message):
    sr = tmp_path / "sr"
    if "{sr}" in weights:   # an SR node is no encoder
        sr.mkdir()
        sr_cfg = blind_config(photo_set, sr, str(encoder_node))
        assert train(sr_cfg, "--gpu", "off", "--num_epochs", "1") == 0
    weights = weights.format(sr=sr / "Results" / "rcan_supmoco",
                             csv=photo_set["lr"] / "degradation_metadata.csv",
                             sha=encoder_node / "saved_models" / "epoch_1.pt.sha256")
    path = blind_config(photo_set, tmp_path, weights)
    with pytest.raises(ConfigError, match=message) as err:
        from rumpy.training.setup import prepare
        prepare(load_config(path, overrides={"gpu": "off"}))
    assert "model.internal_params.pre_trained_encoder_weights" in str(err.value)
    assert train(path, "--gpu", "off") == 2
    assert not (tmp_path / "Results").exists()


@pytest.mark.parametrize("epoch, message", [
    (7, r"pre_trained_encoder_epoch: .*supmoco has no saved epoch 7 \(saved: 1, 2\)"),
    ('"first"', "pre_trained_encoder_epoch: expected 'best', 'last' or an epoch number"),
])
def test_encoder_epoch_is_chosen_and_recorded(photo_set, encoder_node, tmp_path, epoch, message):
    """pre_trained_encoder_epoch picks the node's epoch (a contrastive loss grows as the queue
    fills, so 'best' by train-loss can be the first); the node's config records the number."""
    path = blind_config(photo_set, tmp_path, str(encoder_node))
    text = path.read_text().replace("pre_trained_encoder_weights =",
                                    "pre_trained_encoder_epoch = @\npre_trained_encoder_weights =")
    _write(path, text.replace("@", str(epoch)))
    with pytest.raises(ConfigError, match=message):
        from rumpy.training.setup import prepare
        prepare(load_config(path, overrides={"gpu": "off"}))
    assert not (tmp_path / "Results").exists()
    _write(path, text.replace("@", '"last"'))
    assert train(path, "--gpu", "off", "--num_epochs", "1") == 0
    node = tmp_path / "Results" / "rcan_supmoco"
    assert "pre_trained_encoder_epoch = 2" in (node / "config.toml").read_text()
    assert "best epoch" not in (node / "train.log").read_text()
    assert f"pre-trained encoder: {encoder_node} (last epoch 2 of 2)" in \
        (node / "train.log").read_text()
    assert torch.equal(parts(node, 1)["model"]["E.E.0.weight"],
                       parts(encoder_node, 2)["model"]["encoder_q.E.0.weight"])
