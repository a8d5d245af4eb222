"""The original tool's (RUMpy's) configs train unchanged: each test writes a config in the
layout of its shipped sample configs (Documentation/sample_config_files/div2k/*.toml), with the
same keys; only the data paths, the crop and (where a size key exists) the network size are made
small. Its keys keep their original meaning (epoch_cutoff, the cosine schedule counted in
batches, flips, request_crops, cutoff ranges, shortlists, model cleanup, new_params_override_load),
and keys of features rumpy does not have are accepted with a warning when unused and refused, in
the same report as every other problem, when used."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.data.datasets import augment
from rumpy.data.images import write_png
from conftest import rows

# The shipped blur pipeline (rumpy/image_tools/common_args/srmd_blur.toml), kernels made small
# for the tiny images.
PIPELINE = """\
pipeline = [['srmdgaussianblur', 'b-config'], ['downsample', 'd-config']]

[deg_configs]
[deg_configs.d-config]
scale = 4
[deg_configs.b-config]
request_pca_kernels = true
request_full_kernels = false
request_kernel_metadata = true
random = true
kernel_size = 7
"""

META = "'blur_kernel'"

# [model] of each shipped sample config: name and internal parameters, as shipped but for the
# values of size keys.
MODELS = {
    "edsr": ("edsr", "num_blocks = 1\nnum_features = 8\nres_scale = 0.1", 4),
    "rcan": ("rcan", "", 8),
    "han": ("han", "", 8),
    "san": ("san", "max_combined_im_size = 20000", 4),
    "sftmd": ("sftmd", "num_blocks = 1 # Number of residual blocks\nnum_features = 8\n"
                       "in_nc = 3  # model input channels\nmetadata = [META]", 16),
    "srmd": ("srmd", "nc=8  # number of feature maps in network\nnb=3  # number of conv blocks\n"
                     "metadata=[META]", 16),
    "q-edsr": ("qedsr", "num_blocks = 1\nnum_features = 8\nres_scale = 0.1\n"
                        "metadata = [META]\nq_layer_nonlinearity = true", 8),
    "q-rcan": ("qrcan", "style = 'standard'\nmetadata = [META]\ninclude_q_layer = true",
               8),
}


def shipped(data: dict, model: str, params: str, batch_size: int, *, extra_training: str = "",
            extra_data: str = "", epoch_cutoff: int = 1300) -> str:
    """A config in the shipped layout (same keys, same order, same comments)."""
    def data_set(role: str) -> str:
        lines = ["name = 'div2k'", f"lr = '{data['lr']}'",
                 "lr_interp = 'N/A'  # low res data pre-scaled using bicubic interpolation",
                 f"hr = '{data['hr']}'", "degradation_metadata = 'on_site'"]
        if role == "train":
            lines += ["metadata = [META]", "crop = 4", "random_augment = true"]
        else:
            lines += ["metadata=[META]"]
        return "\n".join(lines)

    return f"""\
experiment = "{model}_base"  # experiment name
experiment_save_loc = '{data['results']}'  # experiment save location

[data]
batch_size = {batch_size}  # data batch size
dataloader_threads = 8  # parallel threads to use to speed up data processing
{extra_data}

[data.training_sets]
[data.training_sets.data_1]
{data_set("train")}

[data.training_sets.data_2]
{data_set("train")}

[data.eval_sets]
[data.eval_sets.data_1]
{data_set("eval")}

[model]
name = '{model}'  # model architecture name
[model.internal_params] # parameters specific for each model
scale = 4 # super resolution scale factor
lr = 1e-4 # learning rate
{params}

scheduler = 'cosine_annealing_warm_restarts'
[model.internal_params.scheduler_params]
t_mult = 1  # no change in LR throughout training
restart_period = 125000  # number of batches for restart to occcur
lr_min = 1e-7  # minimum learning rate

[training]
gpu = 'single' # one of multi, single, off
sp_gpu = 0 # inital gpu to use
seed = 8  # random seed
epoch_cutoff = {epoch_cutoff}  # epochs requested
metrics = ['PSNR', 'SSIM']  # metrics to calculate on validation set
id_source = 'standard'  # location of ids to use for face recognition metrics
logging = 'visual' # one of visual or text
{extra_training}
""".replace("[META]", f"[{META}]")


@pytest.fixture(scope="module")
def blurred(tmp_path_factory) -> dict:
    """16 real photo tiles (DIV2K names) blurred and downsampled x4 by the shipped pipeline."""
    from skimage import data

    root = tmp_path_factory.mktemp("original")
    hr = root / "HR"
    hr.mkdir()
    n = 0
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(data, name)()[..., :3]
        for k in range(4):
            n += 1
            tile = img[37 * k: 37 * k + 32, 53 * k: 53 * k + 32]
            write_png(hr / f"{n:04d}.png", np.ascontiguousarray(tile))
    (root / "srmd_blur.toml").write_text(PIPELINE)
    assert rumpy_main(["degrade", "--hr", str(hr), "--out", str(root / "lr_blurred"),
                       "--pipeline_config", str(root / "srmd_blur.toml")]) == 0
    return {"hr": hr, "lr": root / "lr_blurred", "root": root}


@pytest.fixture
def data(blurred, tmp_path) -> dict:
    return {**blurred, "results": tmp_path / "Results" / "SISR"}


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config", list(MODELS))
def test_shipped_configs_train_an_epoch(config, data, tmp_path, caplog):
    model, params, batch = MODELS[config]
    path = write(tmp_path, shipped(data, model, params, batch), f"{config}.toml")
    caplog.set_level(logging.WARNING)
    # On this CPU machine: --gpu off (the file says 'single'); one epoch instead of 1300.
    assert train_main(["--parameters", str(path), "--gpu", "off", "--num_epochs", "1"]) == 0
    node = data["results"] / f"{model}_base"
    (row,) = rows(node)
    assert math.isfinite(float(row["val-PSNR"])) and float(row["train-loss"]) > 0
    # id_source configures a face metric the config does not ask for: one warning
    assert sum("id_source" in r.getMessage() for r in caplog.records) == 1


def test_original_meanings(data, tmp_path):
    """epoch_cutoff is num_epochs; the cosine's restart_period counts batches."""
    path = write(tmp_path, shipped(data, "edsr", MODELS["edsr"][1], 4, epoch_cutoff=3))
    cfg = load_config(path)
    assert cfg.training.num_epochs == 3
    p = cfg.model.internal_params
    assert p.scheduler_params == {"T_0": 125000, "T_mult": 1, "eta_min": 1e-7,
                                  "interval": "batch"}
    # a command-line num_epochs wins over the file's epoch_cutoff
    assert load_config(path, overrides={"num_epochs": 2}).training.num_epochs == 2
    text = shipped(data, "edsr", MODELS["edsr"][1], 4, extra_training="num_epochs = 5")
    with pytest.raises(ConfigError, match="epoch_cutoff = 1300 .* contradicts num_epochs = 5"):
        load_config(write(tmp_path, text, "both.toml"))
    text = shipped(data, "edsr", MODELS["edsr"][1], 4, extra_training="gpu = 'multi'")
    text = text.replace("gpu = 'single' # one of multi, single, off\n", "")
    assert load_config(write(tmp_path, text, "multi.toml")).training.gpu == "multiple"


def test_restart_period_steps_per_batch(data, tmp_path):
    text = shipped(data, "edsr", MODELS["edsr"][1], 4, epoch_cutoff=2)
    text = text.replace("restart_period = 125000", "restart_period = 3")
    path = write(tmp_path, text)
    assert train_main(["--parameters", str(path), "--gpu", "off"]) == 0
    # 32 samples / batch 4 = 8 batches per epoch; the learning-rate column is the rate epoch 2
    # starts with: after 8 batches the cosine of period 3 is at step 8 mod 3 = 2 of its cycle
    # (a per-epoch schedule would be at step 1)
    lr = [float(r["learning-rate"]) for r in rows(data["results"] / "edsr_base")]
    expect = 1e-7 + (1e-4 - 1e-7) * (1 + math.cos(math.pi * 2 / 3)) / 2
    assert lr == pytest.approx([1e-4, expect], rel=1e-6)


def test_every_problem_in_one_report(data, tmp_path):
    """A face metric (unsupported), a misspelt key and a wrong type: all in one report, nothing
    written."""
    text = shipped(data, "edsr", MODELS["edsr"][1], 4)
    text = text.replace("metrics = ['PSNR', 'SSIM']", "metrics = ['PSNR', 'VGG_FR_Rank']")
    text = text.replace("seed = 8", "seed = 'eight'\nsave_sample = true")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "VGG_FR_Rank (face recognition) is not supported" in message
    assert "training.seed: expected an integer" in message
    assert "training.save_sample: unknown key; did you mean 'save_samples'?" in message
    assert "(3 problems)" in message
    assert train_main(["--parameters", str(path), "--gpu", "off"]) == 2
    assert not data["results"].exists()


@pytest.mark.parametrize("params, message", [
    ("in_nc = 1", "model.internal_params.in_nc: expected 3"),
    ("style = 'modulate'\ninclude_q_layer = true", "model.internal_params.style: only 'standard'"),
    ("include_q_layer = false", "include_q_layer: only True is supported .*name = 'rcan'"),
    ("metadata = ['sigma_x']", "model.internal_params.metadata: .* differs from the training"),
    ("perceptual = 'vgg'", "perceptual .* not supported"),
])
def test_original_model_keys_refused_with_reason(data, tmp_path, params, message):
    model = "sftmd" if "in_nc" in params else "qrcan"
    path = write(tmp_path, shipped(data, model, params, 4))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_srmd_names_and_max_im_val(data, tmp_path):
    cfg = load_config(write(tmp_path, shipped(data, "srmd", MODELS["srmd"][1], 4)))
    assert cfg.model.internal_params.arch == {"num_features": 8, "num_layers": 3}
    text = shipped(data, "srmd", MODELS["srmd"][1], 4, extra_training="max_im_val = 255")
    with pytest.raises(ConfigError, match="training.max_im_val: expected 1"):
        load_config(write(tmp_path, text, "max.toml"))


def test_augment_flags_keep_their_meaning():
    img = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    seen = set()
    for seed in range(40):
        (out,) = augment((img,), np.random.default_rng(seed), (True, False, False))
        seen.add(out.tobytes())
        assert out.shape == img.shape and (np.array_equal(out, img) or
                                           np.array_equal(out, img[:, ::-1]))
    assert len(seen) == 2
    for seed in range(40):  # rotation alone: a true rotation, never a mirror image
        (out,) = augment((img,), np.random.default_rng(seed), (False, False, True))
        assert np.array_equal(out, img) or np.array_equal(out, np.rot90(img))
    # all three allowed: as before (the 8 orientations, same draws)
    (a,) = augment((img,), np.random.default_rng(5))
    (b,) = augment((img,), np.random.default_rng(5), (True, True, True))
    assert np.array_equal(a, b)


def test_request_crops_cutoff_shortlist_drop_last(data, tmp_path):
    """request_crops: P patches per image in one batch; cutoff [start, end]; image_shortlist;
    drop_last_training_batch = false trains the short last batch."""
    shortlist = tmp_path / "shortlist.txt"
    shortlist.write_text("0002.png\n0003\n0004\n0005\n0006\n0009\n")
    text = shipped(data, "edsr", MODELS["edsr"][1], 4, epoch_cutoff=1,
                   extra_data="drop_last_training_batch = false")
    text = text.replace("random_augment = true",
                        "random_augment = true\nrequest_crops = 3\nuse_rotation = false", 1)
    text = text.replace("crop = 4\nrandom_augment = true\n\n[data.eval_sets]",
                        "crop = 4\nrandom_augment = true\ncutoff = [3, 6]\n"
                        f"image_shortlist = '{shortlist}'\nrequest_crops = 3\n\n[data.eval_sets]")
    cfg = load_config(write(tmp_path, text))
    from rumpy.tasks import TASKS

    task = TASKS.get("sisr")(cfg)
    task.check_config()
    task.check_data()
    train, _ = task._train_sets, task._eval_sets
    assert len(train[0]) == 16
    assert train[1].keys == ["0005", "0006", "0009"]  # the shortlist's 6, then [3, 6)
    loaders = task.setup(torch.device("cpu"))
    loaders.sampler.set_epoch(1)
    batches = [b["lq"].shape for b in loaders.train]
    # 19 images in batches of 4 (the last one short): 4 x 3 patches each
    assert batches == [(12, 3, 4, 4)] * 4 + [(9, 3, 4, 4)]

    # lines may be paths (the original wrote them so); names without a pair are left out with a
    # warning, none found is an error
    shortlist.write_text(f"{data['hr'] / '0002.png'}\n0099\n0003\n0004\n0005\n")
    task = TASKS.get("sisr")(load_config(write(tmp_path, text, "m.toml")))
    task.check_config()
    task.check_data()
    assert task._train_sets[1].keys == ["0005"]
    shortlist.write_text("0099\n0098.png\n")
    with pytest.raises(ConfigError, match="image_shortlist: none of the 2 images .* has an LR/HR"):
        TASKS_check(write(tmp_path, text, "m.toml"))


def test_model_cleanup_keeps_best_and_last(data, tmp_path):
    text = shipped(data, "edsr", MODELS["edsr"][1], 4, epoch_cutoff=4,
                   extra_training="model_cleanup_frequency = 2\ncleanup_metric = 'val-SSIM'")
    path = write(tmp_path, text)
    cfg = load_config(path)
    assert (cfg.training.keep_every_n_epochs, cfg.training.keep_last_n) == (0, 1)
    assert cfg.training.best_load_metric == "val-SSIM"
    assert train_main(["--parameters", str(path), "--gpu", "off"]) == 0
    node = data["results"] / "edsr_base"
    best = max(rows(node), key=lambda r: float(r["val-SSIM"]))["epoch"]
    kept = sorted(int(p.stem.split("_")[1]) for p in (node / "saved_models").glob("epoch_*.pt"))
    assert kept == sorted({int(best), 4})


@pytest.mark.slow
def test_new_params_override_load(data, tmp_path):
    text = shipped(data, "edsr", MODELS["edsr"][1], 4, epoch_cutoff=1)
    path = write(tmp_path, text)
    assert train_main(["--parameters", str(path), "--gpu", "off"]) == 0
    node = data["results"] / "edsr_base"
    changed = write(tmp_path, text.replace("lr = 1e-4 # learning rate", "lr = 5e-4"), "new.toml")
    # unset: the difference is an error, as in the original
    assert train_main(["--parameters", str(changed), "--gpu", "off", "--num_epochs", "2",
                       "--continue_from_epoch", "last"]) == 2
    # false: the node's own settings win, in place
    keep = write(tmp_path, text.replace("lr = 1e-4 # learning rate", "lr = 5e-4") +
                 "new_params_override_load = false\n", "keep.toml")
    assert train_main(["--parameters", str(keep), "--gpu", "off", "--num_epochs", "2",
                       "--continue_from_epoch", "last"]) == 0
    assert [int(r["epoch"]) for r in rows(node)] == [1, 2]
    assert "lr = 0.0001" in (node / "config.toml").read_text()
    # true: the file's settings win, in a new branch
    take = write(tmp_path, text.replace("lr = 1e-4 # learning rate", "lr = 5e-4") +
                 "new_params_override_load = true\n", "take.toml")
    assert train_main(["--parameters", str(take), "--gpu", "off", "--num_epochs", "3",
                       "--continue_from_epoch", "last"]) == 0
    branch = node / "branch_epoch_2"
    assert "lr = 0.0005" in (branch / "config.toml").read_text()
    assert [int(r["epoch"]) for r in rows(branch)] == [1, 2, 3]


def test_whole_images_without_crop(data, tmp_path):
    """No crop: whole images, as in the original; images of several sizes need batch_size 1."""
    text = shipped(data, "edsr", MODELS["edsr"][1], 4, epoch_cutoff=1)
    text = text.replace("crop = 4\n", "")
    path = write(tmp_path, text)
    cfg = load_config(path)
    assert all(ds.crop == 0 for ds in cfg.data.training_sets.values())
    assert train_main(["--parameters", str(path), "--gpu", "off"]) == 0
    odd = tmp_path / "odd"
    for role in ("HR", "LR"):
        (odd / role).mkdir(parents=True)
    for i, size in enumerate((32, 40)):
        img = np.full((size, size, 3), 100 + i, np.uint8)
        write_png(odd / "HR" / f"{i:04d}.png", img)
        write_png(odd / "LR" / f"{i:04d}.png", img[::4, ::4].copy())
    text = text.replace(f"lr = '{data['lr']}'", f"lr = '{odd / 'LR'}'")
    text = text.replace(f"hr = '{data['hr']}'", f"hr = '{odd / 'HR'}'")
    text = text.replace("degradation_metadata = 'on_site'\n", "")
    text = text.replace(f"metadata = [{META}]\n", "").replace(f"metadata=[{META}]\n", "")
    with pytest.raises(ConfigError, match="data.batch_size: expected 1 when crop = 0"):
        TASKS_check(write(tmp_path, text, "odd.toml"))


def TASKS_check(path: Path) -> None:
    from rumpy.tasks import TASKS

    task = TASKS.get("sisr")(load_config(path))
    task.check_config()
    task.check_data()


def test_srcnn_vdsr_on_luma(data, tmp_path):
    """colorspace = 'ycbcr': the network sees and changes only the luma of the upscaled input."""
    from rumpy.models import build_model

    for name in ("srcnn", "vdsr"):
        net = build_model(name, {"colorspace": "ycbcr", "num_features": 4,
                                 **({"num_layers": 3} if name == "vdsr" else
                                    {"mid_features": 4})}, scale=2)
        assert next(net.parameters()).shape[1] == 1  # one input channel
        x = torch.rand(1, 3, 10, 10)
        from rumpy.models.colour import rgb_to_ycbcr

        out = net(x)
        assert torch.allclose(rgb_to_ycbcr(out)[:, 1:], rgb_to_ycbcr(x)[:, 1:], atol=1e-5)
    with pytest.raises(ValueError, match="colorspace: expected one of rgb, ycbcr"):
        build_model("srcnn", {"colorspace": "lab"}, scale=2)


# The shipped rcan-dan.toml (Documentation/sample_config_files/dan_blind_sr/), as shipped but for
# the data paths and the crop; its data (lr_iso_blur_only) is blurred by the original's default
# iso Gaussian kernels (21x21, 10 PCA components), as ISO_PIPELINE makes it.
RCAN_DAN = """\
experiment = "rcan_dan"  # experiment name
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
name = 'dan'  # model architecture name
[model.internal_params]
mode = 'v1QRCAN'
scale = 4
lr = 0.0001
scheduler = "cosine_annealing_warm_restarts"
metadata = [ "blur_kernel"]
selective_meta_blocks = [ true, false, false, false, false, false, false, false, false, false,]
style = "standard"
include_q_layer = true
num_q_layers_inner_residual = 1
ignore_degradation_location = true

[model.internal_params.scheduler_params]
t_mult = 1
restart_period = 250000
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

ISO_PIPELINE = """\
pipeline = [['srmdgaussianblur', 'b-config'], ['downsample', 'd-config']]
[deg_configs]
[deg_configs.d-config]
scale = 4
[deg_configs.b-config]
random = true
pca_batch_len = 2000
"""


@pytest.fixture(scope="module")
def iso_blurred(blurred) -> dict:
    """The same HR tiles with the original's default iso kernels (21x21)."""
    root = blurred["root"]
    (root / "iso.toml").write_text(ISO_PIPELINE)
    assert rumpy_main(["degrade", "--hr", str(blurred["hr"]), "--out",
                       str(root / "lr_iso_blur_only"), "--pipeline_config",
                       str(root / "iso.toml")]) == 0
    return {"hr": blurred["hr"], "lr": root / "lr_iso_blur_only"}


def test_rcan_dan_config(iso_blurred, tmp_path):
    """rcan-dan.toml as shipped: its keys keep their meaning (the model's metadata and
    ignore_degradation_location reach the sets, the scheduler repeated in scheduler_params),
    and it builds the original's network (10 groups of 20 blocks, meta-attention only in the
    first block of the first group). Trained for an epoch with the network made small (the
    full one takes minutes per epoch on a CPU): blind validation and the estimator's error."""
    text = RCAN_DAN.format(results=tmp_path / "Results", **iso_blurred)
    cfg = load_config(write(tmp_path, text, "rcan-dan.toml"))
    for ds in (*cfg.data.training_sets.values(), *cfg.data.eval_sets.values()):
        assert ds.metadata == ["blur_kernel"] and ds.ignore_degradation_location is True
    from rumpy.models import build_model
    arch = cfg.model.internal_params.arch
    model = build_model("dan", arch, scale=4, num_metadata=10)
    names = list(model.state_dict())
    assert len(model.Restorer.body) == 10 and len(model.Restorer.body[0].body) == 20
    assert {n.split(".q_node")[0] for n in names if ".q_node." in n} == {"Restorer.body.0.body.0"}
    small = text.replace("num_q_layers_inner_residual = 1",
                         "num_q_layers_inner_residual = 1\nnf = 16\nn_resgroups = 2\n"
                         "n_resblocks = 2\nestimator_nf = 16\nestimator_blocks = 2")
    small = small.replace("true, false, false, false, false, false, false, false, false, false,",
                          "true, false,")
    path = write(tmp_path, small, "rcan-dan-small.toml")
    assert train_main(["--parameters", str(path), "--gpu", "off", "--num_epochs", "1"]) == 0
    (row,) = rows(tmp_path / "Results" / "rcan_dan")
    assert math.isfinite(float(row["val-PSNR"])) and float(row["val-estimator-error"]) > 0
    assert float(row["train-loss-estimator"]) > 0
