"""Blind SR: paired sets carry per-image degradation metadata from a `rumpy degrade` CSV
(normalised to [0, 1]), the sisr task hands it to models that take it, and srmd, sftmd, qedsr
and qrcan (built as their papers describe) train on it for real; missing metadata is a one-line
error naming the image; inference of a conditioned node works through `rumpy eval` and is a
clear error where the metadata cannot be supplied."""
from __future__ import annotations

import csv
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.models import build_model

PIPELINE = """\
pipeline = [["realesrganblur", "b"], ["downsample", "d"], ["realesrgannoise", "n"]]
scale = 2
seed = 3

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
META = '["sigma_x", "sigma_y", "gaussian_noise_sigma"]'
TINY = {"srmd": "num_layers = 3\nnum_features = 8",
        "sftmd": "num_features = 8\nnum_blocks = 1",
        "qedsr": "num_features = 8\nnum_blocks = 1\nq_layer_nonlinearity = true",
        "qrcan": "num_groups = 1\nnum_blocks = 1\nnum_features = 8\nreduction = 4",
        "qhan": "num_groups = 1\nnum_blocks = 1\nnum_features = 8\nreduction = 4",
        "qsan": "num_groups = 1\nnum_blocks = 1\nnum_features = 8\nreduction = 4"}


@pytest.fixture(scope="module")
def degraded(tmp_path_factory, tiny_sets) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("degraded")
    (root / "pipeline.toml").write_text(PIPELINE)
    for role in ("train", "val"):
        assert rumpy_main(["degrade", "--hr", str(tiny_sets[f"{role}_hr"]), "--out",
                           str(root / role), "--pipeline_config",
                           str(root / "pipeline.toml")]) == 0
    return {"train_lr": root / "train", "train_hr": tiny_sets["train_hr"],
            "val_lr": root / "val", "val_hr": tiny_sets["val_hr"], "root": root}


def blind_toml(sets: dict, tmp_path: Path, model: str = "sftmd", num_epochs: int = 2,
               metadata: str = META, eval_metadata: str | None = None,
               train_csv: str = '"on_site"') -> Path:
    eval_metadata = metadata if eval_metadata is None else eval_metadata
    text = textwrap.dedent(f"""\
        experiment = "blind_{model}"
        experiment_save_loc = "{tmp_path / 'Results'}"

        [training]
        num_epochs = {num_epochs}
        seed = 3
        gpu = "off"
        metrics = ["PSNR", "SSIM"]
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

        [data.training_sets.tiles]
        lr = "{sets['train_lr']}"
        hr = "{sets['train_hr']}"
        crop = 12
        random_augment = false
        degradation_metadata = {train_csv}
        metadata = {metadata}

        [data.eval_sets.chelsea]
        lr = "{sets['val_lr']}"
        hr = "{sets['val_hr']}"
        degradation_metadata = "on_site"
        metadata = {eval_metadata}
        """).replace("{params}", TINY.get(model, "num_features = 8\nnum_blocks = 1"))
    path = tmp_path / f"{model}.toml"
    path.write_text(text)
    return path


def _summary(node: Path) -> list[dict]:
    with open(node / "result_outputs" / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", sorted(TINY))
def test_conditioned_model_trains_on_degraded_data(model, degraded, tmp_path):
    assert train_main(["--parameters", str(blind_toml(degraded, tmp_path, model))]) == 0
    rows = _summary(tmp_path / "Results" / f"blind_{model}")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(np.isfinite(float(r["val-PSNR"])) for r in rows)
    assert float(rows[1]["val-loss"]) < float(rows[0]["val-loss"])  # it learns


def test_batches_carry_normalised_metadata(degraded, tmp_path):
    from rumpy.catalog import load_config
    from rumpy.data.paired import check_data

    cfg = load_config(blind_toml(degraded, tmp_path))
    train, evals = check_data(cfg)
    meta = train[0].metadata
    assert meta.shape == (8, 3) and meta.dtype == np.float32
    assert meta.min() >= 0 and meta.max() <= 1
    with open(degraded["train_lr"] / "degradation_metadata.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    first = rows[train[0].lr_paths[0].name]
    # normalised over the pipeline's configured ranges (degradation_config.toml)
    assert meta[0, 0] == pytest.approx((float(first["0-realesrganblur-sigma_x"]) - 0.5) / 2.0)
    assert meta[0, 2] == pytest.approx((float(first["2-realesrgannoise-gaussian_noise_sigma"])
                                        - 1.0) / 9.0)
    from rumpy.data.paired import build_loaders
    loaders = build_loaders(cfg, train, evals, pin_memory=False)
    batch = next(iter(loaders.train))
    assert batch["metadata"].shape == (4, 3)
    assert next(iter(loaders.evals["chelsea"]))["metadata"].shape[1] == 3


def test_papers_layer_counts():
    srmd = build_model("srmd", {}, scale=2, num_metadata=16)  # 15 kernel PCA + noise level
    convs = [m for m in srmd.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 12 and convs[0].in_channels == 3 + 16 and convs[1].out_channels == 128
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in srmd.modules()) == 10
    assert convs[-1].out_channels == 3 * 2 * 2
    from rumpy.models.meta_attention import MetaAttention
    from rumpy.models.sftmd import SFTLayer
    sftmd = build_model("sftmd", {}, scale=4, num_metadata=10)
    assert len(sftmd.blocks) == 16
    assert sum(isinstance(m, SFTLayer) for m in sftmd.modules()) == 2 * 16 + 1
    assert sftmd.head[0].out_channels == 64
    qedsr = build_model("qedsr", {}, scale=2, num_metadata=1)
    assert sum(isinstance(m, MetaAttention) for m in qedsr.modules()) == 16
    qrcan = build_model("qrcan", {}, scale=2, num_metadata=1)
    assert sum(isinstance(m, MetaAttention) for m in qrcan.modules()) == 10 * 20
    # the conditioning really enters: other metadata, another output
    x = torch.rand(1, 3, 8, 8)
    small = build_model("qedsr", {"num_features": 8, "num_blocks": 2}, scale=2, num_metadata=2)
    assert not torch.allclose(small(x, torch.zeros(1, 2)), small(x, torch.ones(1, 2)))


def test_missing_row_is_a_one_line_error_naming_the_image(degraded, tmp_path, caplog):
    lr = tmp_path / "lr"
    shutil.copytree(degraded["train_lr"], lr)
    csv_path = lr / "degradation_metadata.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(line for line in lines if not line.startswith("0003.png")) + "\n")
    sets = {**degraded, "train_lr": lr}
    with caplog.at_level("ERROR"):
        assert train_main(["--parameters", str(blind_toml(sets, tmp_path))]) != 0
    assert "image 0003.png has no row in" in caplog.text
    assert "data.training_sets.tiles.degradation_metadata" in caplog.text
    assert not (tmp_path / "Results").exists()


@pytest.mark.parametrize("damage, key, message", [
    (lambda text: b"\xff\xfe\x00garbage\x81" * 50, "degradation_metadata",
     "is not a CSV file rumpy degrade wrote (UnicodeDecodeError"),
    (None, "metadata", "image 0003.png: 0-realesrganblur-sigma_x is 99 in"),
])
def test_damaged_metadata_csvs_are_one_line_errors(degraded, tmp_path, caplog, damage, key,
                                                  message):
    lr = tmp_path / "lr"
    shutil.copytree(degraded["train_lr"], lr)
    csv_path = lr / "degradation_metadata.csv"
    if key == "metadata":  # sigma_x of image 0003 replaced by 99, outside [0.5, 2.5]
        lines = csv_path.read_text().splitlines()
        header = lines[0].split(",")
        column = header.index("0-realesrganblur-sigma_x")
        for n, line in enumerate(lines):
            if line.startswith("0003.png,"):
                cells = line.split(",")
                cells[column] = "99"
                lines[n] = ",".join(cells)
        csv_path.write_text("\n".join(lines) + "\n")
    else:
        csv_path.write_bytes(damage(csv_path.read_text()))
    with caplog.at_level("ERROR"):
        assert train_main(["--parameters", str(blind_toml({**degraded, "train_lr": lr},
                                                          tmp_path))]) == 2
    assert message in caplog.text and "Traceback" not in caplog.text
    assert f"data.training_sets.tiles.{key}" in caplog.text
    assert not (tmp_path / "Results").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"metadata": '["sigma_z"]'}, "no column 'sigma_z'"),
    ({"metadata": "[]", "eval_metadata": "[]"}, "is conditioned on degradation metadata"),
    ({"eval_metadata": '["sigma_x"]'}, "set chelsea gives ['sigma_x']"),
    ({"train_csv": '"missing.csv"'}, "file not found"),
])
def test_bad_metadata_configs_are_refused_before_writing(degraded, tmp_path, caplog, kwargs,
                                                         message):
    with caplog.at_level("ERROR"):
        assert train_main(["--parameters", str(blind_toml(degraded, tmp_path, **kwargs))]) != 0
    assert message in caplog.text
    assert not (tmp_path / "Results").exists()


def test_inference_of_a_conditioned_node(degraded, tmp_path, caplog):
    from rumpy.inference import load_experiment, predict
    from rumpy.inference.load import InferenceError

    assert train_main(["--parameters", str(blind_toml(degraded, tmp_path, "srmd", 1))]) == 0
    node = tmp_path / "Results" / "blind_srmd"
    model = load_experiment(node)
    assert model.rumpy.model_kwargs == {"scale": 2, "num_metadata": 3}
    # rumpy eval: metadata from the eval set's CSV, the same scores as validation
    assert rumpy_main(["eval", str(node), "--epoch", "1"]) == 0
    with open(node / "eval" / "epoch_1" / "average_metrics.csv", newline="") as f:
        scores = next(csv.DictReader(f))
    assert float(scores["PSNR"]) == pytest.approx(float(_summary(node)[0]["val-PSNR"]), abs=1e-6)
    with pytest.raises(InferenceError, match="conditioned on each image's degradation metadata"):
        predict(model, np.zeros((8, 8, 3), np.uint8))
    with caplog.at_level("ERROR"):
        assert rumpy_main(["export-model", str(node)]) != 0
    assert "conditioned on each image's degradation metadata" in caplog.text
    assert not (node / "export").exists()


@pytest.mark.slow
def test_conditioned_model_continues_and_forks(degraded, tmp_path):
    cfg = blind_toml(degraded, tmp_path, "qedsr", 1)
    assert train_main(["--parameters", str(cfg)]) == 0
    cfg.write_text(cfg.read_text().replace("num_epochs = 1", "num_epochs = 2"))
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "last"]) == 0
    node = tmp_path / "Results" / "blind_qedsr"
    assert [r["epoch"] for r in _summary(node)] == ["1", "2"]
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "1", "--new_branch",
                       "--new_branch_name", "again"]) == 0
    # the branch redoes epoch 2 from the same state and data: the same numbers
    assert _summary(node / "again")[-1]["val-PSNR"] == _summary(node)[-1]["val-PSNR"]


def test_a_predictor_of_the_degradation_trains_on_degrade_output(degraded, tmp_path):
    """The regression task learns metadata back from the degraded LR images: `rumpy degrade`'s
    folder is an images_with_targets set as it is (its CSV's `image` column names the files)."""
    sets = []
    for role, folder in (("training_sets", degraded["train_lr"]),
                         ("eval_sets", degraded["val_lr"])):
        sets.append(textwrap.dedent(f"""\
            [data.{role}.deg]
            type = "images_with_targets"
            images = "{folder}"
            targets = "{folder / 'degradation_metadata.csv'}"
            target_columns = ["0-realesrganblur-sigma_x", "2-realesrgannoise-gaussian_noise_sigma"]
            """))
    cfg = tmp_path / "predictor.toml"
    cfg.write_text(textwrap.dedent(f"""\
        experiment = "predictor"
        experiment_save_loc = "{tmp_path / 'Results'}"
        task = "regression"

        [training]
        num_epochs = 2
        seed = 3
        gpu = "off"
        metrics = ["MAE", "RMSE"]
        aim_track = false

        [model]
        name = "cnn_regressor"

        [model.internal_params]
        lr = 1e-3
        num_features = 8
        num_blocks = 1

        [data]
        batch_size = 4
        dataloader_threads = 0
        cache_dir = "{tmp_path / 'cache'}"

        """) + "\n".join(sets))
    assert train_main(["--parameters", str(cfg)]) == 0
    rows = _summary(tmp_path / "Results" / "predictor")
    assert len(rows) == 2 and np.isfinite(float(rows[-1]["val-RMSE"]))
    # targets named by their parameter: summary columns cannot hold the CSV's '-'
    assert "val-RMSE-sigma_x" in rows[-1] and "val-RMSE-gaussian_noise_sigma" in rows[-1]


def test_blind_evaluation_with_predicted_metadata(degraded, tmp_path, caplog):
    """Predict, then super-resolve: `rumpy eval SR --metadata-from PREDICTOR` scores the SR node
    with the predictor's estimates, in its own folder beside the ground-truth evaluation."""
    targets = '["0-realesrganblur-sigma_x", "2-realesrgannoise-gaussian_noise_sigma"]'
    cfg = tmp_path / "predictor.toml"
    cfg.write_text(textwrap.dedent(f"""\
        experiment = "predictor"
        experiment_save_loc = "{tmp_path / 'Results'}"
        task = "regression"
        [training]
        num_epochs = 1
        seed = 3
        gpu = "off"
        metrics = ["MAE", "RMSE"]
        aim_track = false
        [model]
        name = "cnn_regressor"
        [model.internal_params]
        lr = 1e-3
        num_features = 8
        num_blocks = 1
        [data]
        batch_size = 4
        dataloader_threads = 0
        cache_dir = "{tmp_path / 'cache'}"
        [data.training_sets.deg]
        type = "images_with_targets"
        images = "{degraded['train_lr']}"
        targets = "{degraded['train_lr'] / 'degradation_metadata.csv'}"
        target_columns = {targets}
        [data.eval_sets.deg]
        type = "images_with_targets"
        images = "{degraded['val_lr']}"
        targets = "{degraded['val_lr'] / 'degradation_metadata.csv'}"
        target_columns = {targets}
        """))
    assert train_main(["--parameters", str(cfg)]) == 0
    sr = blind_toml(degraded, tmp_path, "srmd", 1, metadata='["sigma_x", "gaussian_noise_sigma"]')
    assert train_main(["--parameters", str(sr)]) == 0
    node, predictor = tmp_path / "Results" / "blind_srmd", tmp_path / "Results" / "predictor"
    with caplog.at_level("INFO"):
        assert rumpy_main(["eval", str(node), "--epoch", "1", "--metadata-from",
                           str(predictor)]) == 0
    assert "predicted metadata from" in caplog.text
    with open(node / "eval" / "epoch_1_metadata_from_predictor" / "average_metrics.csv") as f:
        assert np.isfinite(float(next(csv.DictReader(f))["PSNR"]))
    caplog.clear()
    with caplog.at_level("ERROR"):  # an SR node is no predictor
        assert rumpy_main(["eval", str(node), "--metadata-from", str(node)]) == 2
    assert "--metadata-from takes a node that predicts named targets" in caplog.text


@pytest.mark.slow
def test_a_continue_refuses_metadata_normalised_otherwise(degraded, tmp_path, caplog):
    """Without degradation_config.toml beside the CSV the values would be normalised over the
    CSV's own span instead of the pipeline's ranges: the model's inputs would silently change."""
    lr = tmp_path / "lr"
    shutil.copytree(degraded["train_lr"], lr)
    path = blind_toml({**degraded, "train_lr": lr}, tmp_path, num_epochs=1)
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "blind_sftmd"
    (lr / "degradation_config.toml").rename(tmp_path / "aside.toml")
    before = sorted(p.name for p in node.rglob("*"))
    caplog.clear()
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "2"]) == 2
    assert "data.training_sets.tiles.metadata: the node trained with other metadata: " \
           "0-realesrganblur-sigma_x was normalised over [0.5, 2.5]" in caplog.text
    assert sorted(p.name for p in node.rglob("*")) == before  # nothing written
    (tmp_path / "aside.toml").rename(lr / "degradation_config.toml")
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "2"]) == 0


def test_qrcan_on_h264_with_its_qp_as_metadata(tiny_sets, tmp_path):
    """The original's qrcan_qpi: LR images H.264-coded at a QP per image (ffmpegcompress), the
    QP handed to the model as `qpi`, normalised over the configured QP range."""
    pytest.importorskip("av")
    (tmp_path / "h264.toml").write_text(
        'pipeline = [["downsample", "d"], ["ffmpegcompress", "h"]]\nscale = 2\nseed = 1\n'
        '[deg_configs.d]\n[deg_configs.h]\ncompression_range = [15, 45]\n')
    sets = {"train_hr": tiny_sets["train_hr"], "val_hr": tiny_sets["val_hr"]}
    for role in ("train", "val"):
        assert rumpy_main(["degrade", "--hr", str(tiny_sets[f"{role}_hr"]), "--out",
                           str(tmp_path / role), "--pipeline_config",
                           str(tmp_path / "h264.toml")]) == 0
        sets[f"{role}_lr"] = tmp_path / role
    from rumpy.catalog import load_config
    from rumpy.training.setup import prepare
    path = blind_toml(sets, tmp_path, "qrcan", metadata='["qpi"]')
    run = prepare(load_config(path))
    batch = next(iter(run.loaders.train))
    assert batch["metadata"].shape == (4, 1)
    with open(tmp_path / "train" / "degradation_metadata.csv", newline="") as f:
        qps = {r["image"]: int(r["1-ffmpegcompress-qpi"]) for r in csv.DictReader(f)}
    assert all(15 <= q <= 45 for q in qps.values())
    assert ((batch["metadata"] >= 0) & (batch["metadata"] <= 1)).all()
    assert train_main(["--parameters", str(path)]) == 0
    rows = _summary(tmp_path / "Results" / "blind_qrcan")
    assert float(rows[1]["val-loss"]) < float(rows[0]["val-loss"])
