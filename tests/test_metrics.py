"""Metrics follow the standard SR protocol and agree with the reference implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.metrics import METRICS
from rumpy.metrics.sr import prepare as protocol_view
from rumpy.metrics.lpips import ALEXNET_FILE, LPIPSNet, lpips_heads_path
from rumpy.training.setup import prepare


def _pair(seed: int, size: int = 64):
    """A real photo crop and a noisy 8-bit version of it, as uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    hr = data.astronaut()[100: 100 + size, 150: 150 + size]
    sr = np.clip(hr.astype(int) + rng.integers(-12, 13, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def _batch(*imgs) -> torch.Tensor:
    return torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in imgs]).double()


@pytest.mark.parametrize("scale", [2, 4])
def test_psnr_ssim_y_channel_match_skimage(scale):
    pairs = [_pair(s) for s in range(3)]
    sr = _batch(*[p[0] for p in pairs])
    hr = _batch(*[p[1] for p in pairs])
    sr_y, hr_y = protocol_view(sr, "y", scale), protocol_view(hr, "y", scale)
    psnr = METRICS.get("psnr")()(sr_y, hr_y)
    ssim = METRICS.get("ssim")()(sr_y, hr_y)
    for i, (s, h) in enumerate(pairs):
        ys = rgb2ycbcr(s)[..., 0][scale:-scale, scale:-scale]
        yh = rgb2ycbcr(h)[..., 0][scale:-scale, scale:-scale]
        ref_psnr = peak_signal_noise_ratio(yh, ys, data_range=255)
        ref_ssim = structural_similarity(yh, ys, data_range=255, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
        assert abs(float(psnr[i]) - ref_psnr) < 1e-4
        assert abs(float(ssim[i]) - ref_ssim) < 1e-4


def test_a_greyscale_image_is_scored_on_its_grey_values_as_the_papers_do():
    """Set14's bridge.png is greyscale: the papers' MATLAB scripts score such an image on its
    grey values; its studio-swing luma (BasicSR's way, `metric_grey = "luma"`) compresses the
    errors by 219/255 and adds 1.32 dB. A colour image in the same batch is scored as before."""
    from rumpy.metrics.sr import prepare_pair
    rng = np.random.default_rng(3)
    grey = data.camera()[100:164, 200:264]  # a real greyscale photo, expanded to RGB
    hr_g = np.repeat(grey[..., None], 3, axis=2)
    sr_g = np.repeat(np.clip(grey.astype(int) + rng.integers(-9, 10, grey.shape), 0, 255)
                     .astype(np.uint8)[..., None], 3, axis=2)
    sr_c, hr_c = _pair(1)
    sr, hr = _batch(sr_g, sr_c), _batch(hr_g, hr_c)
    psnr, ssim = METRICS.get("psnr")(), METRICS.get("ssim")()
    own = prepare_pair(sr, hr, "y", 2, "own")
    luma = prepare_pair(sr, hr, "y", 2, "luma")
    g_sr, g_hr = sr_g[2:-2, 2:-2, 0], hr_g[2:-2, 2:-2, 0]
    assert abs(float(psnr(*own)[0]) - peak_signal_noise_ratio(g_hr, g_sr, data_range=255)) < 1e-4
    ref_ssim = structural_similarity(g_hr.astype(float), g_sr.astype(float), data_range=255,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(float(ssim(*own)[0]) - ref_ssim) < 1e-4
    gain = float(psnr(*luma)[0]) - float(psnr(*own)[0])
    assert abs(gain - 20 * np.log10(255 / 219)) < 1e-4  # 1.32 dB
    for a, b in zip(own, luma):  # the colour image: studio-swing luma either way
        assert torch.equal(a[1], b[1])


def test_rgb_and_no_crop_options_match_skimage():
    s, h = _pair(7)
    sr, hr = _batch(s), _batch(h)
    sr, hr = protocol_view(sr, "rgb", 0), protocol_view(hr, "rgb", 0)
    psnr = METRICS.get("psnr")()(sr, hr)
    ssim = METRICS.get("ssim")()(sr, hr)
    assert abs(float(psnr[0]) - peak_signal_noise_ratio(h, s, data_range=255)) < 1e-4
    ref = structural_similarity(h.astype(float), s.astype(float), data_range=255, channel_axis=2,
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(float(ssim[0]) - ref) < 1e-4


def test_identical_images_score_perfectly():
    _, h = _pair(0)
    hr = protocol_view(_batch(h), "y", 2)
    assert torch.isinf(METRICS.get("psnr")()(hr, hr)).all()
    assert float(METRICS.get("ssim")()(hr, hr)[0]) == pytest.approx(1.0, abs=1e-12)


@pytest.fixture(scope="module")
def lpips_package():
    """The lpips package's own network (random AlexNet, real linear heads from its wheel). Its
    import needs torchvision's compiled ops, absent here: registering the two operator schemas
    torchvision's meta registrations look for lets it import."""
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        try:
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # a working torchvision already defined it
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lpips
        torch.manual_seed(0)
        net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    yield net, lib


def _alexnet_state(net) -> dict:
    """The lpips package's backbone weights under torchvision's AlexNet key names."""
    out = {}
    for key, value in net.state_dict().items():
        if key.startswith("net.slice"):
            _, _, idx, param = key.split(".")
            out[f"features.{idx}.{param}"] = value.clone()
    return out


def test_lpips_forward_equals_lpips_package(lpips_package):
    net, _ = lpips_package
    ours = LPIPSNet()
    ours.load_weights(_alexnet_state(net),
                      torch.load(lpips_heads_path(), map_location="cpu", weights_only=True))
    torch.manual_seed(1)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        expected = net(x, y).flatten()
        got = ours(x, y)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)
    assert (got > 0).all()


def test_lpips_metric_reads_weights_from_hub_cache(lpips_package, tmp_path, monkeypatch):
    net, _ = lpips_package
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(_alexnet_state(net), tmp_path / "hub" / "checkpoints" / ALEXNET_FILE)
    metric = METRICS.get("lpips")()
    s, h = _pair(3)
    sr, hr = _batch(s), _batch(h)
    with torch.no_grad():
        expected = net(sr.float() / 127.5 - 1, hr.float() / 127.5 - 1).flatten()
    assert metric.higher_is_better is False
    assert torch.allclose(metric(sr, hr).float(), expected, atol=1e-6)


def test_lpips_without_weights_fails_before_training(write_config, tmp_path, monkeypatch):
    from rumpy.metrics import lpips_jax
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("RUMPY_NO_DOWNLOAD", "1")
    monkeypatch.setattr(lpips_jax, "package_file", lambda net: None)  # nor lpips-jax's copy
    text = write_config().read_text().replace('"PSNR", "SSIM"', '"PSNR", "LPIPS"')
    path = write_config(text=text)
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path))
    assert "training.metrics: LPIPS needs the AlexNet ImageNet weights at" in str(info.value)
    assert ALEXNET_FILE in str(info.value)
    assert not (tmp_path / "Results").exists()


def test_training_with_lpips_reports_it(lpips_package, write_config, tmp_path, monkeypatch):
    """LPIPS end to end: weights from the hub cache, a val-LPIPS column, per-image values."""
    import csv
    from rumpy.cli.train import main as train_main
    net, _ = lpips_package
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    (tmp_path / "torch_home" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(_alexnet_state(net), tmp_path / "torch_home" / "hub" / "checkpoints" / ALEXNET_FILE)
    text = write_config().read_text().replace('"PSNR", "SSIM"', '"PSNR", "SSIM", "LPIPS"')
    assert train_main(["--parameters", str(write_config(text=text))]) == 0
    out = tmp_path / "Results" / "tiny" / "result_outputs"
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert "val-LPIPS" in rows[0] and all(0 < float(r["val-LPIPS"]) < 1 for r in rows)
    per_image = list(csv.DictReader(open(out / "per_image_epoch_2.csv")))
    mean = sum(float(r["LPIPS"]) for r in per_image) / len(per_image)
    assert mean == pytest.approx(float(rows[1]["val-LPIPS"]), abs=1e-9)
    baseline = list(csv.DictReader(open(out / "bicubic_baseline.csv")))
    assert float(baseline[0]["LPIPS"]) >= 0
