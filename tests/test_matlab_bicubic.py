"""Bicubic resampling is MATLAB's `imresize`: LR images (prepare-data) within one grey level of
MATLAB everywhere, borders included, and the bicubic baseline within 0.005 dB of MATLAB's bicubic
row. The reference below is MATLAB's published algorithm (imresize.m: `contributions`,
`resizeAlongDim`), written here loop by loop in numpy and independently of rumpy.data.resize."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data

from rumpy.cli.main import main as rumpy_main
from rumpy.data.images import bicubic, downscale_uint8, quantize, read_rgb, to_float, write_png
from rumpy.metrics.sr import prepare, psnr, ssim


# -- the reference: MATLAB imresize(A, scale, 'bicubic') ------------------------------------------
def _keys_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax ** 3 - 2.5 * ax ** 2 + 1
    if ax <= 2:
        return -0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2
    return 0.0


def _matlab_contributions(in_length: int, out_length: int, scale: float):
    """Per output pixel: (1-based input indices, weights), as imresize.m's `contributions`."""
    kernel_width = 4.0
    if scale < 1:  # antialiasing: h(x) = scale * cubic(scale * x), over a wider support
        kernel = lambda x: scale * _keys_cubic(scale * x)  # noqa: E731
        kernel_width = kernel_width / scale
    else:
        kernel = _keys_cubic
    aux = list(range(1, in_length + 1)) + list(range(in_length, 0, -1))  # mirror boundary
    rows = []
    for x in range(1, out_length + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - kernel_width / 2)
        count = math.ceil(kernel_width) + 2
        indices = [left + k for k in range(count)]
        weights = [kernel(u - j) for j in indices]
        total = sum(weights)
        weights = [w / total for w in weights]
        indices = [aux[(j - 1) % (2 * in_length)] for j in indices]
        rows.append((indices, weights))
    return rows


def _resize_along(a: np.ndarray, dim: int, rows, as_uint8: bool) -> np.ndarray:
    out_shape = list(a.shape)
    out_shape[dim] = len(rows)
    out = np.zeros(out_shape)
    moved_in = np.moveaxis(a.astype(np.float64), dim, 0)
    moved_out = np.moveaxis(out, dim, 0)
    for i, (indices, weights) in enumerate(rows):
        for j, w in zip(indices, weights):
            moved_out[i] += w * moved_in[j - 1]
    if as_uint8:  # imresizemex returns the input's class: uint8 rounds (half away from 0) per pass
        return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return out


def matlab_imresize(a: np.ndarray, scale: float) -> np.ndarray:
    """imresize(a, scale, 'bicubic') for an HxW(xC) array, uint8 (rounded as MATLAB does) or
    float (not rounded). Dimensions are resized in order of increasing scale (rows first on ties)."""
    as_uint8 = a.dtype == np.uint8
    out = a
    for dim in (0, 1):
        out_length = math.ceil(a.shape[dim] * scale)
        out = _resize_along(out, dim, _matlab_contributions(a.shape[dim], out_length, scale),
                            as_uint8)
    return out


# -- LR images --------------------------------------------------------------------------------
def _photo(name: str, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(getattr(data, name)()[40:40 + h, 60:60 + w, :3])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_images_are_matlab_imresize_everywhere(scale):
    """Equal to MATLAB's uint8 result at every pixel, the outer border included (PyTorch's
    resampler was up to 15 levels off there), and within one grey level of resampling in float
    and rounding once (BasicSR's port), except where MATLAB's rounding after the first pass
    saturates an overshoot at 0 or 255."""
    hr = _photo("astronaut", 24 * scale, 20 * scale)
    ours = downscale_uint8(hr, scale).astype(int)
    ref = matlab_imresize(hr, 1 / scale).astype(int)
    assert ours.shape == ref.shape == (24, 20, 3)
    assert np.array_equal(ours, ref)
    in_float = np.clip(np.floor(matlab_imresize(hr.astype(np.float64), 1 / scale) + 0.5), 0, 255)
    assert np.abs(ours - in_float).max() <= 1


def test_prepare_data_writes_matlab_lr(tmp_path):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    hr = _photo("coffee", 48, 36)
    write_png(hr_dir / "cup.png", hr)
    assert rumpy_main(["prepare-data", "--hr", str(hr_dir), "--out", str(tmp_path / "lr"),
                       "--scale", "3"]) == 0
    lr = read_rgb(tmp_path / "lr" / "cupx3.png").astype(int)
    assert np.array_equal(lr, matlab_imresize(hr, 1 / 3).astype(int))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscaling_is_matlab_imresize(scale):
    """No antialiasing when enlarging; mirrored borders; float values agree to float rounding."""
    lr = _photo("chelsea", 11, 9).astype(np.float64) / 255
    ours = bicubic(torch.from_numpy(lr).permute(2, 0, 1)[None], (11 * scale, 9 * scale))
    ref = matlab_imresize(lr, scale)
    assert np.abs(ours[0].permute(1, 2, 0).numpy() - ref).max() < 1e-12


def test_non_integer_sizes_follow_matlab():
    """A size that is not an integer multiple (an eval pair cropped oddly) is resampled the same
    way, with scale = new size / old size per side."""
    img = torch.from_numpy(_photo("astronaut", 13, 17).astype(np.float64))
    ours = bicubic(img.permute(2, 0, 1)[None], (26, 34))[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - matlab_imresize(img.numpy(), 2)).max() < 1e-9


# -- the bicubic baseline -------------------------------------------------------------------------
def _y_psnr(up: np.ndarray, hr: np.ndarray, scale: int) -> float:
    a = prepare(torch.from_numpy(up).permute(2, 0, 1)[None].double(), "y", scale)
    b = prepare(torch.from_numpy(hr).permute(2, 0, 1)[None].double(), "y", scale)
    return float(psnr(a, b)[0])


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_baseline_is_matlabs_bicubic_row(scale):
    """The baseline as the evaluator computes it against MATLAB's bicubic row (imresize of the
    uint8 LR image back up): the same 8-bit image, so the same PSNR; pre-upsampled inputs
    (resampled in float, not rounded) are within 0.005 dB of it."""
    from rumpy.tasks.sisr_eval import Evaluator

    hr = _photo("chelsea", 30 * scale, 32 * scale)
    lr = matlab_imresize(hr, 1 / scale)
    batch = {"lr": torch.from_numpy(lr).permute(2, 0, 1)[None],
             "hr": torch.from_numpy(hr).permute(2, 0, 1)[None], "index": torch.tensor([0])}
    from rumpy.metrics.sr import PSNR
    ev = Evaluator([PSNR()], scale, "y", True, {"s": [batch]}, {"s": ["cat"]},
                   torch.device("cpu"), 0)
    matlab = _y_psnr(matlab_imresize(lr, scale).astype(np.float64), hr, scale)
    assert ev.bicubic_baseline().means["s"]["PSNR"] == pytest.approx(matlab, abs=1e-9)
    x = to_float(batch["lq"])
    ours = quantize(bicubic(x, (hr.shape[0], hr.shape[1])))[0].permute(1, 2, 0).numpy()
    assert abs(_y_psnr(ours, hr, scale) - matlab) < 0.005


def test_pre_upsampling_scripts_with_dynamic_sizes():
    """The exported srcnn/vdsr carry the resampler inside: it scripts, and the scripted network
    gives the same result at sizes other than any example's."""
    from rumpy.inference.export import SRNetwork

    net = SRNetwork(torch.nn.Identity(), 3, True).eval()
    scripted = torch.jit.script(net)
    for size in [(7, 5), (12, 16)]:
        x = torch.rand(2, 3, *size)
        out = scripted(x)
        assert out.shape[-2:] == (size[0] * 3, size[1] * 3)
        assert torch.equal(out, net(x))


# -- SSIM on images smaller than its window --------------------------------------------------------
def test_ssim_on_an_image_smaller_than_the_window_is_a_clear_error():
    x = torch.rand(1, 1, 9, 30) * 255
    with pytest.raises(ValueError, match=r"SSIM needs at least 11x11 pixels.*9x30"):
        ssim(x, x)


def test_ssim_on_too_small_eval_images_is_refused_before_training(write_config, tmp_path):
    """An eval set whose images SSIM cannot score (6 LR pixels: 12 HR, 8 after the border crop)
    is a one-line config error naming the set and the image, before the run folder exists."""
    from rumpy.cli.train import main as train_main

    cfg = write_config()
    cfg.write_text(cfg.read_text() + "crop = 6\n")  # appended to the last table: the eval set
    assert train_main(["--parameters", str(cfg)]) != 0
    assert not (tmp_path / "Results" / "tiny").exists()
