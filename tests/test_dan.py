"""DAN (issue 22, item 5): estimator and restorer trained together on blurred photo tiles with
their kernels' PCA codes, validated blind with the estimator's error as a column; continued
exactly from an epoch and from a mid-epoch stop; the original's state-dict names; bad settings
refused before anything is written; ignore_degradation_location with the original's meaning."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import no_timing, rows, stop_after
from test_gan import equal, parts

from rumpy.catalog import load_config
from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.config import ConfigError
from rumpy.data.images import write_png
from rumpy.data.metadata import _column, normalisation
from rumpy.models import build_model
from rumpy.training import trainer

# iso Gaussian blur (the original's lr_iso_blur_only) then x4 downsampling; a small PCA sample
PIPELINE = """\
pipeline = [['srmdgaussianblur', 'b-config'], ['downsample', 'd-config']]
[deg_configs]
[deg_configs.d-config]
scale = 4
[deg_configs.b-config]
random = true
kernel_size = 9
pca_length = 6
pca_batch_len = 500
"""

TINY = """mode = 'v1QRCAN'
nf = 8
loop = 2
kernel_size = 9
n_resgroups = 2
n_resblocks = 1
selective_meta_blocks = [true, false]
num_q_layers_inner_residual = 1
estimator_nf = 8
estimator_blocks = 1"""


@pytest.fixture(scope="module")
def iso(tmp_path_factory) -> dict:
    """8 photo tiles (32x32 HR), blurred by random iso kernels and downsampled x4."""
    from skimage import data

    root = tmp_path_factory.mktemp("dan")
    hr = root / "HR"
    hr.mkdir()
    n = 0
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(data, name)()[..., :3]
        for k in range(2):
            n += 1
            write_png(hr / f"{n:04d}.png",
                      np.ascontiguousarray(img[37 * k: 37 * k + 32, 53 * k: 53 * k + 32]))
    (root / "iso.toml").write_text(PIPELINE)
    assert rumpy_main(["degrade", "--hr", str(hr), "--out", str(root / "lr"),
                       "--pipeline_config", str(root / "iso.toml")]) == 0
    return {"hr": hr, "lr": root / "lr", "root": root}


def config(iso: dict, tmp_path: Path, params: str = TINY, epochs: int = 3, train_meta: str =
           "metadata = ['blur_kernel']", eval_meta: str = "metadata = ['blur_kernel']") -> Path:
    path = tmp_path / "dan.toml"
    path.write_text(f"""\
experiment = "dan"
experiment_save_loc = "{tmp_path / 'Results'}"
[training]
num_epochs = {epochs}
seed = 5
gpu = "off"
metrics = ["PSNR"]
num_samples = 1
aim_track = false
[model]
name = "dan"
[model.internal_params]
scale = 4
lr = 2e-3
scheduler = "step_lr"
scheduler_params = {{step_size = 1, gamma = 0.8}}
{params}
[data]
batch_size = 4
dataloader_threads = 0
[data.training_sets.iso]
lr = "{iso['lr']}"
hr = "{iso['hr']}"
degradation_metadata = "on_site"
{train_meta}
crop = 4
[data.eval_sets.iso]
lr = "{iso['lr']}"
hr = "{iso['hr']}"
degradation_metadata = "on_site"
{eval_meta}
""")
    return path


def train(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def test_dan_trains_blind_and_continues_exactly(iso, tmp_path, monkeypatch):
    path = config(iso, tmp_path)
    assert train(path) == 0
    whole = tmp_path / "Results" / "dan"
    rs = rows(whole)
    for column in ("train-loss-sr", "train-loss-estimator", "val-estimator-error"):
        assert all(float(r[column]) > 0 for r in rs), column
    # one loss over both networks: train-loss is the sum of the two terms
    for r in rs:
        assert float(r["train-loss"]) == pytest.approx(
            float(r["train-loss-sr"]) + float(r["train-loss-estimator"]), rel=1e-6)
    # the estimator learns the kernels: its error on the eval set falls
    errors = [float(r["val-estimator-error"]) for r in rs]
    assert errors[-1] < errors[0]
    p = parts(whole, 3)
    # the starting code is a delta kernel's (from the data's basis), kept in the checkpoint
    assert not torch.all(p["model"]["init_ker_map"] == 0.5)
    assert p["model"]["encoder"].abs().sum() > 0

    # split at an epoch: 2 epochs, then on to 3
    assert train(path, "--experiment_name", "split", "--num_epochs", "2") == 0
    assert train(path, "--experiment_name", "split", "--continue_from_epoch", "last") == 0
    # stopped mid-epoch 2 (a Ctrl+C after 3 of this process's steps; 2 per epoch), continued
    monkeypatch.setattr(trainer, "StopRequest", stop_after(3))
    assert train(path, "--experiment_name", "halted") == 130
    monkeypatch.undo()
    assert train(path, "--experiment_name", "halted", "--continue_from_epoch", "last") == 0
    for name in ("split", "halted"):
        node = whole.parent / name
        assert no_timing(rows(node)) == no_timing(rows(whole)), name
        for key in ("model", "optimizer", "scheduler", "loop"):
            assert equal(parts(node, 3)[key], p[key]), (name, key)

    # eval is blind: the eval set without metadata scores the same images the same way
    from rumpy.inference.evaluate import evaluate_node
    report = evaluate_node(whole, epoch=3)
    means = report.sets[0].means
    assert means["PSNR"] == pytest.approx(float(rs[2]["val-PSNR"]), abs=1e-9)
    assert means["estimator-error"] == pytest.approx(float(rs[2]["val-estimator-error"]),
                                                     abs=1e-9)


def test_estimator_error_is_the_final_codes_error(iso, tmp_path):
    """The column is what it claims: the mean absolute error between the final estimated code
    and each image's true (normalised) code."""
    path = config(iso, tmp_path, epochs=1)
    assert train(path) == 0
    node = tmp_path / "Results" / "dan"
    cfg = load_config(path)
    from rumpy.data.paired import check_eval_sets
    (evals,) = check_eval_sets(cfg)
    model = build_model("dan", cfg.model.internal_params.arch, scale=4, num_metadata=6)
    model.load_state_dict(parts(node, 1)["model"])
    model.eval()
    from rumpy.data.images import read_rgb, to_float
    errors = []
    for i, lr_path in enumerate(evals.lr_paths):
        lr = to_float(torch.from_numpy(read_rgb(lr_path)).permute(2, 0, 1)[None])
        with torch.no_grad():
            model(lr)
        errors.append(float((model.last_estimate[0] - torch.from_numpy(evals.metadata[i]))
                            .abs().mean()))
    assert float(rows(node)[0]["val-estimator-error"]) == pytest.approx(np.mean(errors),
                                                                        abs=1e-6)


def test_original_state_dict_names():
    """Names as the original's DANv1Models.DANv1QRCAN (QRCAN of its architectures.py) and
    DANv1.Estimator, so its checkpoints ({'network': ...}) load through init_weights_path."""
    model = build_model("dan", {"mode": "v1QRCAN", "nf": 8, "n_resgroups": 2, "n_resblocks": 2,
                                "selective_meta_blocks": [True, False],
                                "num_q_layers_inner_residual": 1}, scale=4, num_metadata=10)
    names = set(model.state_dict())
    for name in ("encoder", "init_kernel", "init_ker_map", "Restorer.head.0.weight",
                 "Restorer.body.0.body.0.body.0.weight", "Restorer.body.0.body.0.body.2.weight",
                 "Restorer.body.0.body.0.final_body.conv_du.0.weight",
                 "Restorer.body.0.body.0.q_node.attribute_integrator.0.weight",
                 "Restorer.body.0.body.0.q_node.attribute_integrator.2.weight",
                 "Restorer.body.0.final_body.weight", "Restorer.final_body.weight",
                 "Restorer.tail.0.0.weight", "Restorer.tail.0.2.weight", "Restorer.tail.1.weight",
                 "Estimator.head_LR.weight", "Estimator.head_HR.weight",
                 "Estimator.body.0.body.0.weight", "Estimator.body.4.body.3.body.2.weight",
                 "Estimator.out.weight"):
        assert name in names, name
    # q-layers only where selective_meta_blocks and num_q_layers_inner_residual put them
    assert not any("q_node" in n for n in names if n.startswith(("Restorer.body.1.",
                                                                 "Restorer.body.0.body.1.")))
    assert model.state_dict()["encoder"].shape == (1, 21 * 21, 10)
    v1 = build_model("dan", {"mode": "v1", "nf": 8, "nb": 2}, scale=2, num_metadata=10)
    assert {"Restorer.head.weight", "Restorer.body.1.body.3.body.0.weight",
            "Restorer.fusion.weight", "Restorer.upscale.0.weight"} <= set(v1.state_dict())


def test_v1qhan_names_and_training(iso, tmp_path):
    """mode 'v1QHAN': the original's DANv1QHAN layout (its QHAN: the Q-RCAN groups, the closing
    convolution as body.<groups>, layer attention `la` over every group's output, channel-spatial
    attention `csa`, `last_conv`, `last`); outputs equal to the original's were checked with its
    code for 10 groups (the only count its QHAN builds). Trains blind like v1QRCAN."""
    params = {"mode": "v1QHAN", "nf": 8, "n_resgroups": 2, "n_resblocks": 1,
              "selective_meta_blocks": [True, False], "num_q_layers_inner_residual": 1}
    names = set(build_model("dan", params, scale=4, num_metadata=10).state_dict())
    for name in ("Restorer.head.0.weight", "Restorer.body.0.body.0.q_node.attribute_integrator.0.weight",
                 "Restorer.body.1.final_body.weight", "Restorer.body.2.weight",
                 "Restorer.la.gamma", "Restorer.csa.conv.weight", "Restorer.csa.gamma",
                 "Restorer.last_conv.weight", "Restorer.last.weight", "Restorer.tail.1.weight",
                 "Estimator.out.weight"):
        assert name in names, name
    path = config(iso, tmp_path, params=TINY.replace("'v1QRCAN'", "'v1QHAN'"), epochs=2)
    assert train(path) == 0
    got = rows(tmp_path / "Results" / "dan")
    assert len(got) == 2 and all(float(r["val-estimator-error"]) > 0 for r in got)
    assert math.isfinite(float(got[-1]["val-PSNR"]))


def test_original_checkpoint_loads_through_init_weights(iso, tmp_path):
    """A file saved the original's way ({'network': state_dict, 'model_name': 'dan'})."""
    path = config(iso, tmp_path, epochs=1)
    cfg = load_config(path)
    source = build_model("dan", cfg.model.internal_params.arch, scale=4, num_metadata=6)
    torch.save({"network": source.state_dict(), "model_name": "dan"}, tmp_path / "orig.pt")
    path.write_text(path.read_text().replace(
        "aim_track = false", f"aim_track = false\ninit_weights_path = '{tmp_path / 'orig.pt'}'"))
    assert train(path) == 0
    import json
    lineage = json.loads((tmp_path / "Results" / "dan" / "lineage.json").read_text())
    assert lineage["init_weights"]["loaded"] == len(source.state_dict())


@pytest.mark.parametrize("change, key, message", [
    (("mode = 'v1QRCAN'", "mode = 'v1QELAN'\nmeta_block = 'da-layer'"), "model.internal_params",
     "meta_block: 'da-layer' is not available: .* not ported"),
    (("mode = 'v1QRCAN'", "mode = 'v1QELAN'\nc_elan = 8"), "model.internal_params.c_elan",
     "multiple of 3"),
    (("kernel_size = 9", "kernel_size = 21"), "model.internal_params.kernel_size",
     "kernels are 9x9"),
    (("selective_meta_blocks = [true, false]", "selective_meta_blocks = [true]"),
     "model.internal_params.selective_meta_blocks", "one flag per residual group"),
    (("metadata = ['blur_kernel']\ncrop", "crop"), "data.training_sets.iso.metadata",
     "learns the degradation"),
])
def test_bad_settings_refused_before_writing(iso, tmp_path, caplog, change, key, message):
    path = config(iso, tmp_path)
    path.write_text(path.read_text().replace(*change))
    assert train(path) == 2
    err = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(err) == 1 and str(path) in err[0] and key in err[0], err
    import re
    assert re.search(message, err[0]), err[0]
    assert "Traceback" not in err[0]
    assert not (tmp_path / "Results").exists()


def test_eval_set_without_metadata_is_scored_blind(iso, tmp_path):
    path = config(iso, tmp_path, epochs=1, eval_meta="")
    assert train(path) == 0
    (row,) = rows(tmp_path / "Results" / "dan")
    assert float(row["val-PSNR"]) > 0 and row["val-estimator-error"] == ""


def test_ignore_degradation_location_matches_any_position(tmp_path):
    """The original's meaning: positions ('1-') removed from the CSV's columns and the names."""
    columns = ["image", "1-srmdgaussianblur-isotropic_sigma", "2-downsample-scale"]
    csv = tmp_path / "degradation_metadata.csv"
    name = "0-srmdgaussianblur-isotropic_sigma"  # named where another pipeline had the step
    with pytest.raises(ConfigError, match="no column"):
        _column("cfg.toml", "data.training_sets.a", name, columns, csv)
    assert _column("cfg.toml", "data.training_sets.a", name, columns, csv,
                   ignore_location=True) == "1-srmdgaussianblur-isotropic_sigma"
    # short names resolve either way; a parameter of two steps is ambiguous without positions
    assert _column("cfg.toml", "w", "isotropic_sigma", columns, csv, True) == columns[1]
    two = columns + ["3-srmdgaussianblur-isotropic_sigma"]
    with pytest.raises(ConfigError, match="several steps give it"):
        _column("cfg.toml", "w", name, two, csv, True)
    assert _column("cfg.toml", "w", "3-srmdgaussianblur-isotropic_sigma", two, csv) == two[3]


def test_ignore_degradation_location_in_checkpoints_and_config(iso, tmp_path):
    path = config(iso, tmp_path, params=TINY + "\nignore_degradation_location = true",
                  train_meta="metadata = ['0-srmdgaussianblur-isotropic_sigma']",
                  eval_meta="metadata = ['isotropic_sigma']\nignore_degradation_location = false")
    cfg = load_config(path)
    # the model-level key (the original's) is every set's unless the set says otherwise
    assert cfg.data.training_sets["iso"].ignore_degradation_location is True
    assert cfg.data.eval_sets["iso"].ignore_degradation_location is False
    norm = normalisation(cfg, "data.training_sets.iso", cfg.data.training_sets["iso"])
    assert norm["columns"] == ["srmdgaussianblur-isotropic_sigma"]  # no position recorded
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("ignore_degradation_location = false",
                                            "ignore_degradation_location = 'yes'"))
    with pytest.raises(ConfigError, match="data.eval_sets.iso.ignore_degradation_location"):
        load_config(bad)


# DANv2 (the original's DANv2.py): the full kernel estimated and trained on
V2 = """mode = 'v2'
nf = 8
nb = 1
ng = 2
loop = 2
kernel_size = 9
estimator_nf = 8
estimator_blocks = 1"""
FIXTURE = Path(__file__).parent / "data" / "original_danv2" / "original_danv2.pt"


def test_v2_outputs_equal_the_originals():
    """The original's DANv2 (tests/data/original_danv2: its weights, input, every iteration's
    SR images and kernels) loads by name, strict, and gives the same outputs."""
    fixture = torch.load(FIXTURE)
    model = build_model("dan", fixture["arch"], scale=fixture["scale"],
                        num_metadata=fixture["num_metadata"])
    model.load_state_dict({k: v.float() for k, v in fixture["state_dict"].items()}, strict=True)
    model.eval()
    with torch.no_grad():
        srs, kernels = model(fixture["lr"].float(), all_iterations=True)
    assert (torch.stack(srs) - fixture["srs"]).abs().max() <= 1e-5
    assert (torch.stack(kernels) - fixture["kernels"]).abs().max() <= 1e-5
    # the restorer's codes are the kernels' projections by the encoder
    codes = torch.stack(kernels) @ model.encoder[0]
    assert (codes - fixture["ker_maps"]).abs().max() <= 1e-5


def test_v2_trains_on_full_kernels_and_continues_exactly(iso, tmp_path, monkeypatch):
    path = config(iso, tmp_path, params=V2, epochs=2)
    cfg = load_config(path)
    from rumpy.data.paired import check_data
    (train_set,), (eval_set,) = check_data(cfg)
    # each image's target is its full 9x9 kernel: the one that blurred it
    assert train_set.metadata.shape == (8, 81)
    assert np.allclose(train_set.metadata.sum(axis=1), 1, atol=1e-5)
    assert train(path) == 0
    whole = tmp_path / "Results" / "dan"
    rs = rows(whole)
    assert len(rs) == 2
    for r in rs:
        assert float(r["train-loss"]) == pytest.approx(
            float(r["train-loss-sr"]) + float(r["train-loss-estimator"]), rel=1e-6)
        assert float(r["val-estimator-error"]) > 0
    p = parts(whole, 2)
    assert p["model"]["encoder"].abs().sum() > 0  # the data's PCA matrix
    assert torch.allclose(p["model"]["init_ker_map"][0],
                          p["model"]["init_kernel"].reshape(-1) @ p["model"]["encoder"][0])
    # stopped mid-epoch 2 (a Ctrl+C after 3 of this process's steps; 2 per epoch), continued
    monkeypatch.setattr(trainer, "StopRequest", stop_after(3))
    assert train(path, "--experiment_name", "halted") == 130
    monkeypatch.undo()
    assert train(path, "--experiment_name", "halted", "--continue_from_epoch", "last") == 0
    node = whole.parent / "halted"
    assert no_timing(rows(node)) == no_timing(rs)
    for key in ("model", "optimizer", "scheduler", "loop"):
        assert equal(parts(node, 2)[key], p[key]), key


@pytest.mark.parametrize("meta, message", [
    ("metadata = ['isotropic_sigma']", "full blur kernel: give metadata = .*blur_kernel.* alone"),
    ("metadata = ['blur_kernel', 'isotropic_sigma']", "alone"),
])
def test_v2_without_full_kernels_refused_before_writing(iso, tmp_path, caplog, meta, message):
    """v2 learns full kernels: data that gives something else is one config error line."""
    path = config(iso, tmp_path, params=V2, train_meta=meta, eval_meta="")
    assert train(path) == 2
    err = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(err) == 1 and "data.training_sets.iso.metadata" in err[0], err
    import re
    assert re.search(message, err[0]), err[0]
    assert "Traceback" not in err[0]
    assert not (tmp_path / "Results").exists()


def test_v2_kernel_with_no_blur_step_refused(tmp_path, caplog):
    """A folder whose pipeline has no blur step the kernels can be rebuilt from."""
    from skimage import data

    hr = tmp_path / "HR"
    hr.mkdir()
    for n in range(2):
        write_png(hr / f"{n:04d}.png", np.ascontiguousarray(data.astronaut()[:32, 32 * n:32 * n + 32]))
    (tmp_path / "down.toml").write_text("pipeline = [['downsample', 'd']]\n[deg_configs]\n"
                                        "[deg_configs.d]\nscale = 4\n")
    assert rumpy_main(["degrade", "--hr", str(hr), "--out", str(tmp_path / "lr"),
                       "--pipeline_config", str(tmp_path / "down.toml")]) == 0
    path = config({"hr": hr, "lr": tmp_path / "lr"}, tmp_path, params=V2, eval_meta="")
    caplog.clear()
    assert train(path) == 2
    err = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(err) == 1 and "data.training_sets.iso.metadata" in err[0], err
    assert "blur" in err[0] and "Traceback" not in err[0], err[0]
    assert not (tmp_path / "Results").exists()


@pytest.mark.parametrize("blur, size", [
    ("srmdgaussianblur", "random = true\nrate_iso = 0.5\nkernel_size = 9"),  # iso and aniso
    # Real-ESRGAN's six families, sinc, supports 7..21 padded to 21x21
    ("realesrganblur", "preset = 'realesrgan'\nsinc_probability = 0.5\nkernel_size = 21"),
])
def test_v2_full_kernels_are_the_ones_that_blurred(iso, tmp_path, blur, size):
    """The training target of v2, rebuilt from the CSV's recorded parameters, is exactly the
    kernel rumpy degrade blurred each image with: blurring the HR image with it and applying
    the rest of the pipeline gives the LR image on disk, bit for bit."""
    from rumpy.data.degrade import read_pipeline, reapply
    from rumpy.data.degrade.base import to_uint8
    from rumpy.data.degrade.kernels import filter2d
    from rumpy.data.images import read_rgb
    from rumpy.data.paired import check_data

    (tmp_path / "p.toml").write_text(
        f"pipeline = [['{blur}', 'b'], ['downsample', 'd']]\nseed = 3\n"
        f"[deg_configs]\n[deg_configs.d]\nscale = 4\n[deg_configs.b]\n{size}\n"
        f"pca_length = 6\npca_batch_len = 200\n")
    lr = tmp_path / "lr"
    assert rumpy_main(["degrade", "--hr", str(iso["hr"]), "--out", str(lr),
                       "--pipeline_config", str(tmp_path / "p.toml")]) == 0
    k = 9 if blur == "srmdgaussianblur" else 21
    path = config({"hr": iso["hr"], "lr": lr}, tmp_path,
                  params=V2.replace("kernel_size = 9", f"kernel_size = {k}"), eval_meta="")
    (train_set, *_), _ = check_data(load_config(path))
    steps = read_pipeline(lr / "degradation_config.toml", overrides={"hr": ".", "out": "."}).steps
    rows_by_image = {r["image"]: r for r in rows_csv(lr / "degradation_metadata.csv")}
    kinds = set()
    assert len(train_set.lr_paths) >= 8
    for lr_path, hr_path, target in zip(train_set.lr_paths, train_set.hr_paths,
                                        train_set.metadata):
        kernel = target.reshape(k, k).astype(np.float64)
        row = rows_by_image[lr_path.name]
        kinds.add(row.get("0-realesrganblur-kernel_type") or
                  ("iso" if float(row["0-srmdgaussianblur-isotropic_sigma"]) > 0 else "aniso"))
        blurred = to_uint8(filter2d(read_rgb(hr_path), kernel))
        assert np.array_equal(reapply(blurred, steps[1:], row), read_rgb(lr_path)), lr_path.name
    assert len(kinds) >= 2, kinds


def rows_csv(path: Path) -> list[dict]:
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_v2_online_sets_give_the_applied_full_kernel(iso, tmp_path):
    """An online set (LR made on the fly) hands v2 the kernel it applied, not its PCA code."""
    from rumpy.data.paired import check_data

    path = config(iso, tmp_path, params=V2, eval_meta="")
    text = path.read_text().replace(
        f'[data.training_sets.iso]\nlr = "{iso["lr"]}"\n', "[data.training_sets.iso]\n")
    text = text.replace("crop = 4\n", "crop = 4\n" + "\n".join(
        ["[data.training_sets.iso.degradations]", PIPELINE.replace("[deg_configs]\n", "")
         .replace("[deg_configs.", "[data.training_sets.iso.degradations.deg_configs.")]) + "\n",
        1)
    path.write_text(text)
    (train_set, *_), _ = check_data(load_config(path))
    online = train_set.online
    assert online.full_kernel
    hr = np.zeros((16, 16, 3), np.uint8)
    _, target = online(hr, np.random.default_rng(1))
    applied = online.sample(np.random.default_rng(1))
    blur = next(s for s in online.steps if s.name == "srmdgaussianblur")
    assert target.shape == (81,)
    assert np.array_equal(target, blur.op.kernel(applied[online.steps.index(blur)])
                          .ravel().astype(np.float32))
