"""Several networks in one run (issue 22, parts 1-3): a GAN branch of a PSNR node, continued
exactly (from an epoch and from a mid-epoch stop) with both networks, both optimizers and the
EMA weights; the architectures' published layouts; the GAN and perceptual losses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import no_timing, rows, stop_after

from rumpy.catalog import load_config
from rumpy.cli.train import main as train_main
from rumpy.config import ConfigError
from rumpy.core.checkpoint import load_checkpoint
from rumpy.core.gan_losses import GAN_LOSSES
from rumpy.core.losses import build_loss, check_loss
from rumpy.core.perceptual import NAMES, vgg19_features
from rumpy.models import build_model
from rumpy.training import trainer
from rumpy.training.setup import prepare

RRDB = 'num_feat = 8\nnum_block = 1\nnum_grow_ch = 4'
DISC = '''
[model.discriminator]
name = "unet_discriminator"
num_feat = 4
gan_type = "ragan"
gan_weight = 0.1
lr = 1e-3
scheduler = "step_lr"
scheduler_params = {step_size = 1, gamma = 0.8}
'''


def train(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def parts(node: Path, epoch: int | str) -> dict:
    name = f"epoch_{epoch}.pt" if isinstance(epoch, int) else f"{epoch}.pt"
    return load_checkpoint(node / "saved_models" / name)["parts"]


def equal(a, b) -> bool:
    """Nested state (weights, optimizer moments, scheduler, scaler) equal tensor by tensor."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


NETWORK_PARTS = ("model", "optimizer", "scheduler", "discriminator", "ema", "loop")


@pytest.fixture
def psnr(write_config, tmp_path):
    """A PSNR-trained rrdbnet node (2 epochs) and the TOML of its GAN stage (with EMA)."""
    cfg = write_config(model="rrdbnet", params=RRDB, num_epochs=2)
    assert train(cfg) == 0
    gan = cfg.with_name("gan.toml")
    gan.write_text(cfg.read_text()
                   .replace("num_epochs = 2", "num_epochs = 4")
                   .replace("num_samples = 1", "num_samples = 1\nema_decay = 0.9") + DISC)
    return tmp_path / "Results" / "tiny", gan


@pytest.mark.slow
def test_gan_fork_of_psnr_node_continues_exactly(psnr, monkeypatch):
    parent, gan = psnr
    flags = ("--continue_from_epoch", "2", "--new_branch", "--new_branch_name")
    assert train(gan, *flags, "whole") == 0
    whole = parent / "whole"
    lineage = json.loads((whole / "lineage.json").read_text())
    assert lineage["parent"] == "" and lineage["fork_epoch"] == 2
    assert "model.discriminator.name" in lineage["config_diff"]
    header = list(rows(whole)[0])
    for column in ("train-loss-l1", "train-loss-gan", "train-loss-d",
                   "learning-rate-discriminator"):
        assert column in header
    assert float(rows(whole)[2]["learning-rate-discriminator"]) > 0
    assert rows(whole)[2]["train-loss-d"] != ""  # the GAN's own epochs have them
    p = parts(whole, 4)
    assert set(NETWORK_PARTS) <= set(p)
    assert set(p["discriminator"]) == {"model", "optimizer", "scheduler", "scaler"}
    assert not equal(p["ema"], p["model"])
    # its own schedule, in the run's epochs: advanced to the fork epoch (as a branch's rebuilt
    # schedule is), then stepped by epochs 3 and 4
    assert p["discriminator"]["scheduler"]["last_epoch"] == 4

    # split at an epoch: 3 epochs, then on to 4 in place
    assert train(gan, *flags, "split", "--num_epochs", "3") == 0
    assert train(gan, "--branch_root", "split", "--continue_from_epoch", "last") == 0
    # stopped mid-epoch 4 (a Ctrl+C after one of its two steps), then continued
    monkeypatch.setattr(trainer, "StopRequest", stop_after(3))
    assert train(gan, *flags, "halted") == 130
    assert (parent / "halted" / "saved_models" / "interrupted.pt").exists()
    monkeypatch.undo()
    assert train(gan, "--branch_root", "halted", "--continue_from_epoch", "last") == 0
    for name in ("split", "halted"):
        node = parent / name
        assert no_timing(rows(node)) == no_timing(rows(whole)), name
        for key in NETWORK_PARTS:
            assert equal(parts(node, 4)[key], p[key]), (name, key)
    # eval loads the generator (its EMA weights) and scores what validation scored
    from rumpy.inference.evaluate import evaluate_node
    report = evaluate_node(whole, epoch=4)
    assert report.sets[0].means["PSNR"] == pytest.approx(float(rows(whole)[3]["val-PSNR"]),
                                                         abs=1e-9)


def test_gan_settings_are_checked_before_writing(psnr, tmp_path):
    _, gan = psnr
    bad = gan.with_name("bad.toml")
    bad.write_text(gan.read_text().replace('"unet_discriminator"', '"unet_discrim"'))
    with pytest.raises(ConfigError) as info:
        prepare(load_config(bad))
    assert "model.discriminator.name" in str(info.value)
    assert "did you mean 'unet_discriminator'" in str(info.value)
    bad.write_text(gan.read_text().replace("gan_weight = 0.1", "gan_weigth = 0.1"))
    with pytest.raises(ConfigError) as info:
        prepare(load_config(bad))
    assert "model.discriminator.gan_weigth" in str(info.value)
    assert "gan_weight" in str(info.value)


def test_rrdbnet_has_the_published_layout():
    """RealESRGAN_x4plus.pth / ESRGAN's names and shapes (num_feat 64, num_grow_ch 32), at a
    small num_block; x2plus pixel-unshuffles (12 input channels)."""
    for scale, in_ch in ((4, 3), (2, 12)):
        sd = build_model("rrdbnet", {"num_block": 2}, scale=scale).state_dict()
        shapes = {k: tuple(v.shape) for k, v in sd.items()}
        expected = {"conv_first.weight": (64, in_ch, 3, 3), "conv_first.bias": (64,)}
        for b in range(2):
            for r in (1, 2, 3):
                for c in range(1, 6):
                    out = 64 if c == 5 else 32
                    expected[f"body.{b}.rdb{r}.conv{c}.weight"] = (out, 64 + (c - 1) * 32, 3, 3)
                    expected[f"body.{b}.rdb{r}.conv{c}.bias"] = (out,)
        for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
            expected[f"{name}.weight"], expected[f"{name}.bias"] = (64, 64, 3, 3), (64,)
        expected["conv_last.weight"], expected["conv_last.bias"] = (3, 64, 3, 3), (3,)
        assert shapes == expected
        x = torch.rand(1, 3, 8, 8)
        assert build_model("rrdbnet", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
                           scale=scale)(x).shape == (1, 3, 8 * scale, 8 * scale)


def test_discriminators():
    vgg = build_model("vgg_discriminator", {"num_feat": 4, "input_size": 128})
    assert vgg(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    names = set(vgg.state_dict())
    assert {"conv0_0.weight", "bn0_1.running_mean", "conv4_1.weight", "linear1.weight",
            "linear2.bias"} <= names
    unet = build_model("unet_discriminator", {"num_feat": 4})
    assert unet(torch.rand(2, 3, 24, 32)).shape == (2, 1, 24, 32)
    assert {"conv0.weight", "conv1.weight_orig", "conv9.bias"} <= set(unet.state_dict())
    with pytest.raises(ValueError):
        unet(torch.rand(1, 3, 20, 20))


@pytest.mark.parametrize("name", ["vanilla", "lsgan", "hinge", "ragan"])
def test_gan_losses_reward_the_right_side(name):
    gan = GAN_LOSSES.get(name)()
    real, fake = torch.full((4, 1), 3.0), torch.full((4, 1), -3.0)
    # a discriminator that tells them apart has a lower loss than one that swaps them
    assert gan.discriminator(real, fake) < gan.discriminator(fake, real)
    # the generator's loss falls as its outputs look real
    assert gan.generator(real, fake) < gan.generator(fake, real)


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory) -> Path:
    """Random VGG19 weights as torchvision names them (the feature layers up to conv3_1)."""
    torch.manual_seed(0)
    features = vgg19_features(NAMES.index("conv3_1") + 1)
    path = tmp_path_factory.mktemp("vgg") / "vgg19_random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def test_perceptual_loss(vgg_file):
    spec = {"perceptual": {"layer_weights": {"conv1_2": 0.1, "conv2_2": 1.0},
                           "vgg_weights_path": str(vgg_file)}}
    assert check_loss(spec) == []
    loss = build_loss(spec)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    assert float(loss(x, x.detach())) == 0.0
    value = loss(x, torch.rand(1, 3, 16, 16))
    value.backward()
    assert value > 0 and x.grad is not None
    assert not any(p.requires_grad for p in loss.vgg.parameters())
    problems = dict(check_loss({"perceptual": {"layer_weights": {"conv5_5": 1.0},
                                               "vgg_weights_path": "/nowhere.pth"}}))
    assert "did you mean" in problems[".perceptual.layer_weights.conv5_5"]
    assert "no such file" in problems[".perceptual.vgg_weights_path"]


def test_perceptual_gan_run_trains(write_config, vgg_file, tmp_path):
    loss = ('loss = {l1 = 0.01, perceptual = {weight = 1.0, layer_weights = {conv2_2 = 1.0}, '
            f'vgg_weights_path = "{vgg_file}"}}}}')
    cfg = write_config(model="rrdbnet", params=RRDB, num_epochs=1, extra_params=loss)
    cfg.write_text(cfg.read_text() + DISC.replace("unet_discriminator", "vgg_discriminator")
                   .replace("num_feat = 4", "num_feat = 4\ninput_size = 32")
                   .replace("crop = 12", "crop = 16"))
    cfg.write_text(cfg.read_text().replace("crop = 12", "crop = 16"))
    assert train(cfg) == 0
    header = list(rows(tmp_path / "Results" / "tiny")[0])
    assert {"train-loss-l1", "train-loss-perceptual", "train-loss-gan", "train-loss-d"} <= \
        set(header)


def test_discriminator_input_size_must_be_the_hr_crop(write_config):
    cfg = write_config(model="rrdbnet", params=RRDB, num_epochs=1)
    cfg.write_text(cfg.read_text() + DISC.replace("unet_discriminator", "vgg_discriminator")
                   .replace("num_feat = 4", "num_feat = 4\ninput_size = 32"))
    with pytest.raises(ConfigError) as info:
        prepare(load_config(cfg))
    assert "model.discriminator.input_size: vgg_discriminator sees the HR training crops: " \
           "expected 24" in str(info.value)


def test_discriminator_section_is_sisr_only(tmp_path):
    from rumpy.config.load import read_toml  # noqa: F401  (the regression quickstart's TOML)
    root = Path(__file__).resolve().parents[1]
    text = (root / "args" / "blur_regression.toml").read_text()
    path = tmp_path / "reg.toml"
    path.write_text(text + '\n[model.discriminator]\nname = "unet_discriminator"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "model.discriminator" in str(info.value) and "not used by task" in str(info.value)


def test_the_gan_and_ema_columns_read_back_for_trackers_and_plots():
    """Loss terms, another network's rate and the raw weights' scores are tracked and plotted
    under their own names, not dropped or read as an eval set called 'raw'."""
    from rumpy.core.columns import Column, direction, parse
    from rumpy.results.plots import groups
    assert parse("train-loss-gan") == Column("train", "loss-gan")
    assert direction("train-loss-d") == "min"
    assert parse("learning-rate-discriminator") == Column("train", "learning_rate",
                                                          target="discriminator")
    assert parse("val-raw-PSNR", ["chelsea"]) == Column("val_raw", "PSNR", "chelsea")
    assert parse("val-raw-PSNR", ["chelsea", "raw"]) == Column("val", "PSNR", "raw")
    assert direction("val-raw-PSNR") == "max"
    plots = groups(["epoch", "train-loss", "learning-rate", "learning-rate-discriminator",
                    "val-PSNR", "val-raw-PSNR"])
    assert plots["learning_rate"] == ["learning-rate", "learning-rate-discriminator"]
    assert plots["PSNR"] == ["val-PSNR", "val-raw-PSNR"]
