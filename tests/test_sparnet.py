"""SPARNet and Q-SPARNet: the original tool's celebahq configs (sparnet.toml, q-sparnet.toml) train
with only data paths, sizes and --gpu changed; the published module names; any image size."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.data.images import write_png
from rumpy.models import build_model
from conftest import rows
from test_original_configs import PIPELINE as BLUR  # the shipped kernel pipeline, small kernels


# Documentation/sample_config_files/celebahq/{sparnet,q-sparnet}.toml as shipped; {size} marks
# the only lines added (the network made small for 32x32 faces on a CPU).
CELEBAHQ = """\
experiment = "{experiment}"  # experiment name
experiment_save_loc = '{results}'  # experiment save location

[data]
batch_size = {batch}  # data batch size
dataloader_threads = {threads}  # parallel threads to use to speed up data processing

[data.training_sets]
[data.training_sets.data_1]
name = 'celeba_hq'
lr = '{lr}'
hr = '{hr}'
degradation_metadata = 'on_site'
metadata = ['blur_kernel']
random_augment = true
image_shortlist = '{train_split}'

[data.eval_sets]
[data.eval_sets.data_1]
name = 'celeba_hq'
lr = '{lr}'
hr = '{hr}'
degradation_metadata = 'on_site'
metadata=['blur_kernel']
image_shortlist = '{eval_split}'

[model]
name = '{model}'  # model architecture name
[model.internal_params] # parameters specific for each model
scale = 4 # super resolution scale factor
lr = 2e-4 # learning rate
{metadata}
{size}

[training]
gpu = 'single' # one of multi, single, off
sp_gpu = 0 # inital gpu to use
seed = 8  # random seed
num_epochs = 50  # epochs requested
metrics = ['PSNR', 'SSIM']  # metrics to calculate on validation set
logging = 'visual' # one of visual or text
"""

SHIPPED = {"sparnet": dict(experiment="sparnet", batch=4, threads=8, model="sparnet",
                           metadata=""),
           "q-sparnet": dict(experiment="qsparnet", batch=2, threads=5, model="qsparnet",
                             metadata="metadata = ['blur_kernel']")}
SMALL = "min_ch = 8\nmax_ch = 16\nin_size = 32\nout_size = 32\nres_depth = 1\nbottleneck_size = 16"


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict:
    """12 face crops of scikit-image's astronaut (32x32 HR), blurred and downsampled x4 by the
    shipped kernel pipeline (its metadata CSV beside them); a train and an eval shortlist."""
    from skimage import data

    root = tmp_path_factory.mktemp("celebahq")
    hr = root / "hr_superres"
    hr.mkdir()
    img = data.astronaut()
    for n in range(12):
        top, left = 20 + 9 * (n // 4), 150 + 11 * (n % 4)  # around the face
        write_png(hr / f"{n:05d}.png", np.ascontiguousarray(img[top: top + 32, left: left + 32]))
    (root / "blur.toml").write_text(BLUR)
    assert rumpy_main(["degrade", "--hr", str(hr), "--out", str(root / "lr_blurred"),
                       "--pipeline_config", str(root / "blur.toml")]) == 0
    (root / "train.csv").write_text("".join(f"{n:05d}.png\n" for n in range(8)))
    (root / "eval.csv").write_text("".join(f"{n:05d}.png\n" for n in range(8, 12)))
    return {"hr": hr, "lr": root / "lr_blurred", "train_split": root / "train.csv",
            "eval_split": root / "eval.csv"}


def shipped(faces: dict, tmp_path, which: str, size: str = SMALL) -> str:
    return CELEBAHQ.format(results=tmp_path / "Results" / "SISR", size=size, **faces,
                           **SHIPPED[which])


@pytest.mark.parametrize("which", ["sparnet", "q-sparnet"])
def test_celebahq_configs_train(faces, tmp_path, which, monkeypatch):
    path = tmp_path / f"{which}.toml"
    text = shipped(faces, tmp_path, which)
    flags = ["--gpu", "off", "--num_epochs", "2", "data.dataloader_threads=0"]
    if which == "q-sparnet":
        # as the README says: the shipped lr folder (upscaled, here the HR folder) replaced on
        # the command line, relative to the working directory
        text = text.replace(f"lr = '{faces['lr']}'", f"lr = '{faces['hr']}'")
        monkeypatch.chdir(faces["lr"].parent)
        flags += [f'data.{s}.data_1.lr="{faces["lr"].name}"' for s in ("training_sets", "eval_sets")]
    path.write_text(text)
    # On this CPU machine: --gpu off and 2 epochs; loader workers off (the shipped 5-8 processes
    # would only queue on 2 cores)
    assert train_main(["--parameters", str(path), *flags]) == 0
    node = tmp_path / "Results" / "SISR" / SHIPPED[which]["experiment"]
    got = rows(node)
    assert len(got) == 2 and all(math.isfinite(float(r["val-PSNR"])) for r in got)
    assert float(got[1]["train-loss"]) < float(got[0]["train-loss"])
    state = torch.load(node / "saved_models" / "last.pt", weights_only=True)["parts"]["model"]
    attention = [k for k in state if ".metadata_attention." in k]
    # q-sparnet conditions every block on the kernel code; sparnet reads no metadata
    assert bool(attention) == (which == "q-sparnet")


def test_published_module_names_and_any_size():
    """The names of Face-SPARNet's weights (as the original tool kept them), so a published
    state dict loads through init_weights_path; images of any size come back at their size."""
    model = build_model("sparnet", {}, scale=4)
    names = set(model.state_dict())
    for name in ("encoder.0.conv2d.weight", "encoder.1.shortcut_func.conv2d.bias",
                 "encoder.1.preact_func.0.norm.running_mean", "encoder.1.conv1.norm.norm.weight",
                 "encoder.1.att_func.b2_plus_1.conv2d.weight",
                 "encoder.1.att_func.b3_4.conv2d.weight", "encoder.1.att_func.out_block.0.conv2d.bias",
                 "res_layers.9.conv2.conv2d.weight", "decoder.2.att_func.b1_5.conv2d.weight",
                 "out_conv.conv2d.weight"):
        assert name in names, name
    assert len(names) == 1154 and len(model.res_layers) == 10  # res_depth + 3 - 3 steps
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 70, 45)).shape == (1, 3, 70, 45)


def test_bad_sizes_are_refused_at_their_key(faces, tmp_path, caplog):
    path = tmp_path / "bad.toml"
    path.write_text(shipped(faces, tmp_path, "sparnet", SMALL.replace("out_size = 32",
                                                                      "out_size = 128")))
    assert train_main(["--parameters", str(path), "--gpu", "off", "data.dataloader_threads=0"]) != 0
    err = caplog.text
    assert "model.internal_params" in err and "out_size: expected in_size (32)" in err
    assert not (tmp_path / "Results").exists()


def test_upscaled_lr_folder_is_explained(faces, tmp_path, caplog):
    """The original's celebahq configs read lr_blurred_interp (LR already upscaled to the HR
    size): rumpy upscales itself, and says so."""
    path = tmp_path / "interp.toml"
    text = shipped(faces, tmp_path, "sparnet").replace(f"lr = '{faces['lr']}'",
                                                        f"lr = '{faces['hr']}'")
    path.write_text(text)
    assert train_main(["--parameters", str(path), "--gpu", "off", "data.dataloader_threads=0"]) != 0
    assert "look upscaled already: give the LR images themselves" in caplog.text
    assert not (tmp_path / "Results").exists()
