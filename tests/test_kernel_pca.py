"""`metadata = ["blur_kernel"]`: rumpy degrade saves a kernel PCA fitted on the pipeline's kernel
distribution (seeded: the same config gives the same file); a paired set hands each image the
PCA code of its kernel, rebuilt exactly from the CSV's parameters, so the code's inverse is the
kernel; the code combines with named parameters, works online, trains a conditioned model, and
every way it cannot be made is a one-line error naming the set."""
from __future__ import annotations

import csv
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.config.errors import ConfigError
from rumpy.data.degrade import PCA_FILE
from rumpy.data.degrade.kernel_pca import load
from rumpy.data.degrade.kernels import make_kernel
from rumpy.data.images import write_png

BLUR = """\
[deg_configs.b]
kernel_range = ["iso"]
kernel_size = 15
sigma_x_range = [0.4, 3.0]
sigma_y_range = [0.4, 3.0]
pca_batch_len = 3000
{extra}
"""
PIPELINE = """\
pipeline = [["realesrganblur", "b"], ["downsample", "d"], ["realesrgannoise", "n"]]
scale = 2
seed = 4

[deg_configs.d]

[deg_configs.n]
gaussian_poisson_ratio = 1.0
gaussian_noise_sigma_range = [1.0, 10.0]
gray_noise_probability = 0.0

""" + BLUR


@pytest.fixture(scope="module")
def hr(tmp_path_factory) -> dict[str, Path]:
    """Crops of real photos: 6 training images of 40x40, 2 validation images of 32x32."""
    root = tmp_path_factory.mktemp("kernel_pca_hr")
    for split, photos, size in (("train", ("astronaut", "coffee", "rocket"), 40),
                                ("val", ("chelsea",), 32)):
        (root / split).mkdir()
        n = 0
        for name in photos:
            img = getattr(data, name)()[..., :3]
            for top, left in ((60, 100), (150, 200)):
                n += 1
                write_png(root / split / f"{n:04d}.png",
                          np.ascontiguousarray(img[top:top + size, left:left + size]))
    return {"train": root / "train", "val": root / "val"}


def degrade(tmp: Path, hr_dir: Path, out: str, pipeline: str = PIPELINE, extra: str = "") -> Path:
    cfg = tmp / f"{out}.toml"
    cfg.write_text(pipeline.format(extra=extra))
    assert rumpy_main(["degrade", "--hr", str(hr_dir), "--out", str(tmp / out),
                       "--pipeline_config", str(cfg)]) == 0
    return tmp / out


@pytest.fixture(scope="module")
def folders(tmp_path_factory, hr) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kernel_pca")
    return {"train": degrade(root, hr["train"], "train"), "val": degrade(root, hr["val"], "val"),
            "root": root}


def _rows(folder: Path) -> list[dict]:
    with open(folder / "degradation_metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def _kernel(row: dict) -> np.ndarray:
    p = {k.split("-", 2)[2]: row[k] for k in row if "-realesrganblur-" in k}
    return make_kernel(p["kernel_type"], int(p["kernel_size"]),
                       {k: float(v) for k, v in p.items() if k not in ("kernel_type",)})


def toml(tmp: Path, hr: dict, folders: dict, *, metadata='["blur_kernel"]', model="sftmd",
         train: str | None = None, num_epochs: int = 1) -> Path:
    train = train or textwrap.dedent(f"""\
        lr = "{folders['train']}"
        hr = "{hr['train']}"
        degradation_metadata = "on_site"
        metadata = {metadata}""")
    text = textwrap.dedent(f"""\
        experiment = "kpca"
        experiment_save_loc = "{tmp / 'Results'}"

        [training]
        num_epochs = {num_epochs}
        seed = 3
        gpu = "off"
        metrics = ["PSNR"]
        num_samples = 0
        aim_track = false

        [model]
        name = "{model}"

        [model.internal_params]
        scale = 2
        lr = 1e-3
        num_features = 8
        num_blocks = 1

        [data]
        batch_size = 3
        dataloader_threads = 0
        cache = "memory"
        cache_dir = "{tmp / 'cache'}"

        [data.eval_sets.val]
        lr = "{folders['val']}"
        hr = "{hr['val']}"
        degradation_metadata = "on_site"
        metadata = {metadata}

        [data.training_sets.tiles]
        crop = 10
        random_augment = false
        """) + train + "\n"
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "kpca.toml"
    path.write_text(text)
    return path


def _check(path: Path):
    from rumpy.catalog import load_config
    from rumpy.data.paired import check_data

    cfg = load_config(path)
    return cfg, *check_data(cfg)


def test_each_code_reconstructs_its_kernel(tmp_path, hr, folders):
    pca = load(folders["train"] / PCA_FILE, "test", "")
    assert pca.pca_length == 10 and pca.kernel_size == 15 and pca.n_samples == 3000
    assert np.allclose(pca.components @ pca.components.T, np.eye(10), atol=1e-9)
    assert np.all(np.diff(pca.explained_variance) <= 0)
    cfg, train, evals = _check(toml(tmp_path, hr, folders))
    kinds: dict[str, list[float]] = {}
    for checked in (train[0], evals[0]):  # the eval set is encoded with the training set's basis
        rows = {r["image"]: r for r in _rows(Path(checked.config.lr))}
        meta = checked.metadata
        assert meta.shape == (len(checked.lr_paths), 10) and meta.dtype == np.float32
        assert meta.min() > -0.05 and meta.max() < 1.05  # normalised over the fitted sample's span
        codes = pca.code_min + meta.astype(np.float64) * (pca.code_max - pca.code_min)
        for code, path in zip(codes, checked.lr_paths):
            row = rows[path.name]
            kernel = _kernel(row)
            # the code is the PCA of the kernel the image was blurred with, rebuilt exactly
            exact = pca.encode(kernel[None])[0]
            assert np.allclose(code, exact, atol=1e-6 * np.abs(exact).max()), path.name
            error = np.abs(pca.decode(code[None])[0] - kernel).sum()  # kernels sum to 1
            kinds.setdefault(row["0-realesrganblur-kernel_type"], []).append(error)
    # isotropic Gaussians are a one-parameter family: 10 components hold them exactly
    assert kinds.keys() == {"iso"} and max(kinds["iso"]) < 1e-3
    from rumpy.data.metadata import metadata_length
    assert metadata_length(cfg) == 10


def test_rotated_anisotropic_kernels_keep_most_of_their_shape():
    """Rotated anisotropic Gaussians span more dimensions: 10 components keep the larger part
    (the figures docs/degradation.md gives), more components keep more."""
    from rumpy.data.degrade.blur import RealESRGANBlur
    from rumpy.data.degrade.config import Step
    from rumpy.data.degrade.kernel_pca import fit

    errors = {}
    for length in (10, 20):
        op = RealESRGANBlur({"kernel_range": ["iso", "aniso"], "kernel_size": 15,
                             "sigma_x_range": [0.6, 3.0], "sigma_y_range": [0.6, 3.0],
                             "pca_batch_len": 3000, "pca_length": length}, 2, "t", "b")
        pca = fit(Step(0, op.name, "b", op), 4, "t", "b")
        rng = np.random.default_rng(1)
        kernels = np.stack([op.kernel(op.sample(rng)) for _ in range(200)])
        errors[length] = np.abs(pca.decode(pca.encode(kernels)) - kernels).sum(axis=(1, 2))
    assert np.median(errors[10]) < 0.1 and errors[10].max() < 0.4
    assert np.median(errors[20]) < np.median(errors[10]) and errors[20].max() < 0.2


def test_same_config_same_basis_and_older_folders_refit(tmp_path, hr, folders):
    again = degrade(tmp_path, hr["train"], "again")
    assert (again / PCA_FILE).read_bytes() == (folders["train"] / PCA_FILE).read_bytes()
    # another image seed draws other images' kernels, but the same distribution's basis is
    # redrawn from the pipeline's seed: a folder made before kernel_pca.npz existed gets it back
    old = tmp_path / "old"
    shutil.copytree(folders["train"], old)
    (old / PCA_FILE).unlink()
    assert rumpy_main(["degrade", "--fit-kernel-pca", str(old)]) == 0
    assert (old / PCA_FILE).read_bytes() == (folders["train"] / PCA_FILE).read_bytes()
    other = degrade(tmp_path, hr["train"], "other", PIPELINE.replace("seed = 4", "seed = 5"))
    assert (other / PCA_FILE).read_bytes() != (folders["train"] / PCA_FILE).read_bytes()
    # the original tool's switch turns it off
    assert not (degrade(tmp_path, hr["val"], "off", extra="request_pca_kernels = false")
                / PCA_FILE).exists()


def test_kernel_code_with_named_parameters(tmp_path, hr, folders):
    cfg, train, _ = _check(toml(tmp_path, hr, folders,
                                metadata='["blur_kernel", "gaussian_noise_sigma"]'))
    meta = train[0].metadata
    assert meta.shape == (6, 11)
    _, alone, _ = _check(toml(tmp_path, hr, folders))
    assert np.array_equal(meta[:, :10], alone[0].metadata)
    rows = {r["image"]: r for r in _rows(folders["train"])}
    sigma = float(rows[train[0].lr_paths[0].name]["2-realesrgannoise-gaussian_noise_sigma"])
    assert meta[0, 10] == pytest.approx((sigma - 1.0) / 9.0)
    from rumpy.data.metadata import metadata_length
    assert metadata_length(cfg) == 11


def test_sftmd_trains_on_kernel_codes_offline_and_online(tmp_path, hr, folders):
    assert train_main(["--parameters", str(toml(tmp_path, hr, folders))]) == 0
    assert (tmp_path / "Results" / "kpca" / "result_outputs" / "summary.csv").is_file()
    # online: the same blur options give the same basis (seed 8, as rumpy degrade's default)
    table = "\n".join(line.replace("[deg_configs.", "[data.training_sets.tiles.degradations."
                                   "deg_configs.") for line in BLUR.format(extra="").splitlines())
    online = textwrap.dedent(f"""\
        hr = "{hr['train']}"
        metadata = ["blur_kernel"]

        [data.training_sets.tiles.degradations]
        pipeline = [["realesrganblur", "b"], ["downsample", "default"]]
        """) + table + "\n"
    path = toml(tmp_path / "on", hr, folders, train=online)
    cfg, train, evals = _check(path)
    rng = np.random.default_rng(0)
    patch = np.ascontiguousarray(data.astronaut()[100:140, 100:140])
    lr, meta = train[0].online(patch, rng)
    assert lr.shape == (20, 20, 3) and meta.shape == (10,)
    assert train_main(["--parameters", str(path)]) == 0


def _error(path: Path, caplog) -> str:
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert train_main(["--parameters", str(path)]) != 0
    assert not (path.parent / "Results").exists()
    return caplog.text


def test_errors_name_the_set(tmp_path, hr, folders, caplog):
    # no blur step in the pipeline that made the set
    plain = tmp_path / "plain"
    (tmp_path / "p.toml").write_text("pipeline = [\"downsample\"]\nscale = 2\n")
    assert rumpy_main(["degrade", "--hr", str(hr["train"]), "--out", str(plain),
                       "--pipeline_config", str(tmp_path / "p.toml")]) == 0
    text = _error(toml(tmp_path / "a", hr, {**folders, "train": plain}), caplog)
    assert "data.training_sets.tiles.metadata" in text and "needs a blur step" in text
    # a folder without its kernel PCA: the command that makes it
    old = tmp_path / "old"
    shutil.copytree(folders["train"], old)
    (old / PCA_FILE).unlink()
    text = _error(toml(tmp_path / "b", hr, {**folders, "train": old}), caplog)
    assert f"rumpy degrade --fit-kernel-pca {old}" in text
    # kernels that cannot be rebuilt: the CSV lost a kernel parameter
    cut = tmp_path / "cut"
    shutil.copytree(folders["train"], cut)
    rows = _rows(cut)
    with open(cut / "degradation_metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, [c for c in rows[0] if c != "0-realesrganblur-sigma_y"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    text = _error(toml(tmp_path / "c", hr, {**folders, "train": cut}), caplog)
    assert "no column '0-realesrganblur-sigma_y'" in text and "cannot be rebuilt" in text
    # a fixed kernel: every code would be the same
    fixed = degrade(tmp_path, hr["train"], "fixed", extra="random_selection = false")
    assert not (fixed / PCA_FILE).exists()
    text = _error(toml(tmp_path / "d", hr, {**folders, "train": fixed}), caplog)
    assert "data.training_sets.tiles.metadata" in text and "kernel is fixed" in text
    # pca_length above kernel_size**2: refused by rumpy degrade and by an online set
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert rumpy_main(["degrade", "--hr", str(hr["train"]), "--out", str(tmp_path / "long"),
                           "--pipeline_config", str(_write(tmp_path / "long.toml", PIPELINE.format(
                               extra="pca_length = 226")))]) == 2
    assert "deg_configs.b.pca_length: expected at most kernel_size**2 = 225" in caplog.text
    assert not (tmp_path / "long").exists()
    online = textwrap.dedent(f"""\
        hr = "{hr['train']}"
        metadata = ["blur_kernel"]

        [data.training_sets.tiles.degradations]
        pipeline = [["realesrganblur", "b"], ["downsample", "default"]]
        [data.training_sets.tiles.degradations.deg_configs.b]
        kernel_size = 5
        pca_length = 26
        """)
    text = _error(toml(tmp_path / "e", hr, folders, train=online), caplog)
    assert "data.training_sets.tiles.degradations.deg_configs.b.pca_length" in text
    assert len([line for line in text.splitlines() if "ERROR" in line]) == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_fit_kernel_pca_needs_a_degrade_folder(tmp_path, caplog):
    with caplog.at_level("ERROR"):
        assert rumpy_main(["degrade", "--fit-kernel-pca", str(tmp_path)]) == 2
    assert "no degradation_config.toml" in caplog.text
    with pytest.raises(ConfigError, match="needs a blur step"):
        from rumpy.data.degrade import read_pipeline
        from rumpy.data.degrade.kernel_pca import blur_step
        p = read_pipeline(short="downsample-noise", overrides={"hr": ".", "out": "."})
        blur_step(p.steps, "x", "pipeline")
