"""`rumpy degrade`: the original tool's pipeline TOML runs; the same config gives identical files;
degradation_metadata.csv holds the parameters actually applied (re-applying a row to its HR image
reproduces the LR file); bad pipelines are one-line errors before anything is written."""
from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from rumpy.cli.main import main as rumpy_main
from rumpy.config.errors import ConfigError
from rumpy.data.degrade import METADATA_FILE, read_pipeline, reapply
from rumpy.data.degrade.kernels import gaussian, make_kernel, sinc
from rumpy.data.images import downscale_uint8, read_rgb, write_png

PIPELINE = """\
pipeline = [["realesrganblur", "b-config"], ["downsample", "d"], ["realesrgannoise", "n"],
            ["jpegcompress", "c"]]
scale = 2
seed = 5
multiples = 2

[deg_configs.b-config]
device = 0
pca_batch_len = 10000
kernel_range = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso", "sinc"]
kernel_size = 11
request_full_kernels = false
request_pca_kernels = false
request_kernel_metadata = true
use_kernel_code = false
sigma_x_range = [0.2, 3.0]
sigma_y_range = [0.2, 3.0]
normalize_metadata = true

[deg_configs.d]

[deg_configs.n]
gaussian_noise_sigma_range = [1.0, 20.0]
poisson_noise_scale_range = [0.05, 2.0]
gray_noise_probability = 0.4

[deg_configs.c]
compression_range = [40, 90]
"""


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("degrade_hr")
    for i, (name, top, left) in enumerate([("astronaut", 30, 60), ("chelsea", 10, 90),
                                           ("coffee", 80, 120)]):
        write_png(root / f"{i:04d}.png", np.ascontiguousarray(
            getattr(data, name)()[top:top + 40, left:left + 36, :3]))
    return root


def _run(tmp_path: Path, hr: Path, out: str, text: str = PIPELINE, *extra: str) -> Path:
    cfg = tmp_path / f"{out}.toml"
    cfg.write_text(text)
    assert rumpy_main(["degrade", "--hr", str(hr), "--out", str(tmp_path / out),
                       "--pipeline_config", str(cfg), *extra]) == 0
    return tmp_path / out


def _rows(folder: Path) -> list[dict]:
    with open(folder / METADATA_FILE, newline="") as f:
        return list(csv.DictReader(f))


def test_same_config_same_files_and_rows_reproduce_images(tmp_path, hr_dir):
    a = _run(tmp_path, hr_dir, "a")
    b = _run(tmp_path, hr_dir, "b")
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert "0000_q0.png" in names and "0002_q1.png" in names and len(names) == 3 * 2 + 2
    for name in names:
        if name != "degradation_config.toml":  # names its own output folder
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    rows = _rows(a)
    assert len(rows) == 6 and rows[0]["image"] == "0000_q0.png"
    assert "0-realesrganblur-sigma_x" in rows[0] and "3-jpegcompress-jpeg_quality" in rows[0]
    steps = read_pipeline(a / "degradation_config.toml", overrides={"out": str(tmp_path / "x")}
                          ).steps
    kinds = set()
    for row in rows:
        hr = read_rgb(hr_dir / (row["image"].split("_q")[0] + ".png"))
        assert np.array_equal(reapply(hr, steps, row), read_rgb(a / row["image"])), row["image"]
        assert read_rgb(a / row["image"]).shape == (20, 18, 3)
        assert 40 <= int(row["3-jpegcompress-jpeg_quality"]) <= 90
        kinds.add(row["0-realesrganblur-kernel_type"])
    assert len(kinds) > 1  # kernels really drawn from the range
    # the copies of one image differ; another seed gives other images
    assert not np.array_equal(read_rgb(a / "0000_q0.png"), read_rgb(a / "0000_q1.png"))
    c = _run(tmp_path, hr_dir, "c", PIPELINE, "--seed", "6")
    assert (c / "0000_q0.png").read_bytes() != (a / "0000_q0.png").read_bytes()


def test_resolved_config_makes_the_same_images_again(tmp_path, hr_dir):
    a = _run(tmp_path, hr_dir, "a")
    again = tmp_path / "again"
    assert rumpy_main(["degrade", "--pipeline_config", str(a / "degradation_config.toml"),
                       "--out", str(again)]) == 0
    for p in a.glob("*.png"):
        assert (again / p.name).read_bytes() == p.read_bytes()
    assert (again / METADATA_FILE).read_bytes() == (a / METADATA_FILE).read_bytes()


def test_short_form_downsample_is_matlab_imresize(tmp_path, hr_dir):
    out = tmp_path / "lr"
    assert rumpy_main(["degrade", "--hr", str(hr_dir), "--out", str(out), "--pipeline",
                       "downsample", "--scale", "2"]) == 0
    for p in sorted(hr_dir.iterdir()):
        assert np.array_equal(read_rgb(out / p.name), downscale_uint8(read_rgb(p), 2))
    assert _rows(out)[0] == {"image": "0000.png", "0-downsample-scale": "2"}
    full = tmp_path / "full"
    assert rumpy_main(["degrade", "--hr", str(hr_dir), "--out", str(full), "--pipeline",
                       "blur-downsample-noise-compress", "--scale", "2"]) == 0
    assert len(list(full.glob("*.png"))) == 3


def test_gaussian_kernels_are_the_published_ones():
    iso = gaussian(11, 1.5, 1.5, 0.0)
    ax = np.arange(-5, 6)
    g = np.exp(-ax ** 2 / (2 * 1.5 ** 2))
    assert np.allclose(iso, np.outer(g, g) / np.outer(g, g).sum())
    # an anisotropic kernel rotated by 90 degrees is the transposed kernel
    assert np.allclose(gaussian(11, 2.5, 0.8, math.pi / 2), gaussian(11, 2.5, 0.8, 0.0).T)
    wide = gaussian(21, 3.0, 0.5, 0.0)  # sigma_x along columns: wide in x, narrow in y
    assert wide[10, :].sum() > 5 * wide[:, 10].sum()
    for k in (sinc(11, 1.0), make_kernel("plateau_aniso", 11, {"sigma_x": 1.0, "sigma_y": 2.0,
                                                               "rotation": 0.3, "beta_p": 1.5})):
        assert abs(k.sum() - 1) < 1e-12 and np.allclose(k, k[::-1, ::-1])


def test_noise_levels_and_grey_noise(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    write_png(flat / "grey.png", np.full((64, 64, 3), 128, np.uint8))
    text = textwrap.dedent("""\
        pipeline = [["realesrgannoise", "n"]]
        [deg_configs.n]
        random_noise_generation = false
        noise_type = "gaussian"
        gaussian_noise_sigma = 10.0
        gray_noise = true
        """)
    out = _run(tmp_path, flat, "noisy", text)
    noisy = read_rgb(out / "grey.png").astype(float)
    assert abs(noisy.std() - 10.0) < 0.8
    assert np.array_equal(noisy[..., 0], noisy[..., 1])  # one field on every channel
    out = _run(tmp_path, flat, "colour", text.replace("gray_noise = true", "gray_noise = false"))
    colour = read_rgb(out / "grey.png")
    assert not np.array_equal(colour[..., 0], colour[..., 1])


def test_srmd_blur_steps(tmp_path, hr_dir):
    text = textwrap.dedent("""\
        pipeline = [["srmdgaussianblur", "s"], ["downsample", "d"]]
        scale = 2
        [deg_configs.s]
        random = true
        sig_min = 0.2
        sig_max = 4.0
        rate_iso = 0.5
        kernel_size = 15
        [deg_configs.d]
        """)
    out = _run(tmp_path, hr_dir, "srmd", text)
    rows = _rows(out)
    steps = read_pipeline(out / "degradation_config.toml",
                          overrides={"out": str(tmp_path / "y")}).steps
    for row in rows:
        assert np.array_equal(reapply(read_rgb(hr_dir / row["image"]), steps, row),
                              read_rgb(out / row["image"]))
        iso = float(row["0-srmdgaussianblur-isotropic_sigma"])
        assert iso == 0 or 0.2 <= iso <= 4.0


@pytest.mark.parametrize("text, key, message", [
    ('pipeline = [["realesrganblurr", "b"]]\n[deg_configs.b]\n', "pipeline[0]",
     "did you mean 'realesrganblur'"),
    ('pipeline = [["jmcompress", "j"]]\n[deg_configs.j]\n', "pipeline[0]", "JM H.264"),
    ('pipeline = [["ffmpegcompress", "f"]]\n[deg_configs.f]\ncompression_range = [10, 60]\n',
     "deg_configs.f.compression_range", "within [0, 51]"),
    ('pipeline = [["ffmpegcompress", "f"]]\n[deg_configs.f]\npreset = "fastest"\n',
     "deg_configs.f.preset", "expected one of ultrafast"),
    ('pipeline = [["downsample", "d"]]\n', "pipeline[0]", "no [deg_configs.d] table"),
    ('pipeline = [["realesrganblur", "b"]]\n[deg_configs.b]\nsigma_range = [1, 2]\n',
     "deg_configs.b.sigma_range", "did you mean"),
    ('pipeline = [["realesrganblur", "b"]]\n[deg_configs.b]\nsigma_x_range = [3, 1]\n',
     "deg_configs.b.sigma_x_range", "low <= high"),
    ('pipeline = [["realesrganblur", "b"]]\n[deg_configs.b]\nkernel_range = ["box"]\n',
     "deg_configs.b.kernel_range", "unknown kernel type"),
    ('pipeline = [["jpegcompress", "c"]]\n[deg_configs.c]\ncompression_range = [0, 200]\n',
     "deg_configs.c.compression_range", "within [1, 100]"),
    ('pipelin = [["downsample", "default"]]\n', "pipelin", "did you mean 'pipeline'"),
    ('pipeline = [["downsample", "default"]]\noutput_extension = ".jpg"\n', "output_extension",
     "lossless"),
    ('pipeline = [["realesrganblur", "b"], ["downsample", "default"]]\nscale = 8\n'
     '[deg_configs.b]\nkernel_size = 81\n', "pipeline[0]", "too small for its 81x81 kernel"),
])
def test_bad_pipelines_are_one_line_errors_before_writing(tmp_path, hr_dir, caplog, text, key,
                                                          message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        from rumpy.data.degrade import run
        run(read_pipeline(cfg, overrides={"hr": str(hr_dir), "out": str(out)}))
    assert info.value.key_path == key and message in str(info.value)
    assert "\n" not in str(info.value) and not out.exists()
    with caplog.at_level("ERROR"):  # the command: exit 2, the same line
        assert rumpy_main(["degrade", "--hr", str(hr_dir), "--out", str(out),
                           "--pipeline_config", str(cfg)]) == 2
    assert message in caplog.text and not out.exists()


def test_output_folder_must_be_new_or_empty(tmp_path, hr_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    from rumpy.data.degrade import run

    with pytest.raises(ConfigError, match="already holds files"):
        run(read_pipeline(None, "downsample", {"hr": str(hr_dir), "out": str(out)}))
    with pytest.raises(ConfigError, match="inside the HR folder"):
        run(read_pipeline(None, "downsample", {"hr": str(hr_dir), "out": str(hr_dir / "lr")}))


@pytest.mark.parametrize("out, flags, message", [
    ("afile", [], "afile is a file, not a folder"),
    ("afile/x", [], "afile is a file, so"),
    ("new", ["--seed", "-3"], "seed: expected an integer from 0 to 2**32 - 1, got -3"),
])
def test_bad_output_folders_and_seeds_are_one_line_errors(tmp_path, hr_dir, caplog, out, flags,
                                                          message):
    (tmp_path / "afile").write_text("mine")
    with caplog.at_level("ERROR"):
        assert rumpy_main(["degrade", "--hr", str(hr_dir), "--out", str(tmp_path / out),
                           "--pipeline", "downsample", *flags]) == 2
    assert message in caplog.text and "Traceback" not in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing made
    assert (tmp_path / "afile").read_text() == "mine"


def test_an_interrupted_degrade_leaves_no_output_behind(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    hr = tmp_path / "hr"
    hr.mkdir()
    photo = data.astronaut()
    for i in range(40):
        write_png(hr / f"{i:03d}.png", np.ascontiguousarray(photo[i * 8: i * 8 + 96, :96]))
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.main", "degrade", "--hr", str(hr),
                             "--out", str(tmp_path / "lr"), "--pipeline", "blur-downsample"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # the first LR image in the hidden folder, then Ctrl+C
    while not list(tmp_path.glob(".lr.partial-*/*.png")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr"]
    # the folder is free for the next run (a quick pipeline: the blur's PCA fit takes ~20 s)
    assert rumpy_main(["degrade", "--hr", str(hr), "--out", str(tmp_path / "lr"),
                       "--pipeline", "downsample"]) == 0
    assert len(list((tmp_path / "lr").glob("*.png"))) == 40


def test_realesrgan_preset_draws_real_esrgans_kernel_distribution(tmp_path, hr_dir):
    from rumpy.data.degrade.blur import RealESRGANBlur

    op = RealESRGANBlur({"preset": "realesrgan"}, 1, "t", "b")
    rng = np.random.default_rng(0)
    drawn = [op.sample(rng) for _ in range(8000)]
    kinds = [p["kernel_type"] for p in drawn]
    # sinc with its probability 0.1, then the six families by Real-ESRGAN's weights
    assert abs(kinds.count("sinc") / len(kinds) - 0.1) < 0.015
    for kind, weight in zip(op.options["kernel_range"], op.options["kernel_probabilities"]):
        assert abs(kinds.count(kind) / len(kinds) - 0.9 * weight) < 0.02, kind
    # a shape beta either side of 1 with equal chance (a uniform draw over [0.5, 4] gives 0.14)
    betas = np.array([p["beta_g"] for p in drawn if p["kernel_type"].startswith("generalized")])
    assert abs(np.mean(betas < 1) - 0.5) < 0.05 and betas.min() >= 0.5 and betas.max() <= 4
    # supports 7..21 drawn uniformly, every kernel padded to 21x21 and summing to 1
    supports = [p["support"] for p in drawn]
    assert sorted(set(supports)) == list(range(7, 22, 2))
    assert all(abs(supports.count(k) / len(supports) - 1 / 8) < 0.02 for k in set(supports))
    small = next(p for p in drawn if p["support"] == 7 and p["kernel_type"] == "iso")
    kernel = op.kernel(small)
    assert kernel.shape == (21, 21) and abs(kernel.sum() - 1) < 1e-9
    assert not kernel[:7].any() and not kernel[:, :7].any()  # the support is 7x7
    # a sinc kernel's cut-off: [pi/3, pi] below a 13-pixel support, [pi/5, pi] from 13 on
    sincs = [p for p in drawn if p["kernel_type"] == "sinc"]
    assert all(p["omega_c"] >= math.pi / 3 for p in sincs if p["support"] < 13)
    assert min(p["omega_c"] for p in sincs if p["support"] >= 13) < math.pi / 3
    # the second degradation's preset: narrower Gaussians
    assert RealESRGANBlur({"preset": "realesrgan2"}, 1, "t", "b").bounds["sigma_x"] == (0.2, 1.5)
    # through rumpy degrade: every LR image is rebuilt exactly from its CSV row (support too)
    text = ('pipeline = [["realesrganblur", "b"], ["downsample", "d"]]\nscale = 2\nseed = 4\n'
            'multiples = 4\n[deg_configs.b]\npreset = "realesrgan"\nrequest_pca_kernels = false\n'
            '[deg_configs.d]\n')
    out = _run(tmp_path, hr_dir, "re", text)
    steps = read_pipeline(out / "degradation_config.toml", overrides={"hr": ".", "out": "."}).steps
    rows = _rows(out)
    assert "0-realesrganblur-support" in rows[0]
    for row in rows:
        hr = read_rgb(hr_dir / (row["image"].rsplit("_q", 1)[0] + ".png"))
        assert np.array_equal(reapply(hr, steps, row), read_rgb(out / row["image"]))
    with pytest.raises(ConfigError, match="unknown preset 'realesrgn'; did you mean 'realesrgan'"):
        RealESRGANBlur({"preset": "realesrgn"}, 1, "t", "b")


H264 = """\
pipeline = [["downsample", "d"], ["ffmpegcompress", "h"]]
scale = 2
seed = 3
multiples = 2

[deg_configs.d]

[deg_configs.h]
compression_range = [10, 45]
"""


def test_h264_compression_records_its_qp_and_reproduces(tmp_path, hr_dir):
    """ffmpegcompress (H.264 through PyAV's libx264): the QP drawn is the `qpi` column, the
    same config gives the same bytes, a row re-applied reproduces its image, and a higher QP
    loses more (PSNR against the uncompressed downsample)."""
    pytest.importorskip("av")
    a = _run(tmp_path, hr_dir, "a", H264)
    b = _run(tmp_path, hr_dir, "b", H264)
    rows = _rows(a)
    assert len(rows) == 6 and all(10 <= int(r["1-ffmpegcompress-qpi"]) <= 45 for r in rows)
    assert len({r["1-ffmpegcompress-qpi"] for r in rows}) > 1
    steps = read_pipeline(a / "degradation_config.toml", overrides={"out": str(tmp_path / "x")}
                          ).steps
    for row in rows:
        assert (a / row["image"]).read_bytes() == (b / row["image"]).read_bytes()
        hr = read_rgb(hr_dir / (row["image"].split("_q")[0] + ".png"))
        assert np.array_equal(reapply(hr, steps, row), read_rgb(a / row["image"]))
    hr, row = read_rgb(hr_dir / "0000.png"), rows[0]
    clean = reapply(hr, steps[:1], row)
    errors = [float(np.mean((reapply(hr, steps, {**row, "1-ffmpegcompress-qpi": q}
                                     ).astype(float) - clean) ** 2)) for q in (10, 30, 51)]
    assert errors[0] < errors[1] < errors[2]
