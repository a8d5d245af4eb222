"""The regression task's parts on their own: the MLP and CNN regressors, the whole-set regression
metrics (against numpy and scipy) and the built-in blur-width data set."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from rumpy.data import blur_set
from rumpy.data.blur_set import (blur_samples, build_blur_set, degrade, gaussian_blur,
                                 gaussian_kernel, gradient_energy)
from rumpy.data.images import downscale_uint8, read_rgb
from rumpy.metrics.registry import METRICS
from rumpy.metrics import regression  # noqa: F401  (registers the metrics)
from rumpy.models.cnn_regressor import CNNRegressor
from rumpy.models.mlp import MLP
from rumpy.models.registry import MODELS


def _fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> list[float]:
    """MSE losses over `steps` full-batch Adam steps."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ---------------------------------------------------------------- models

def test_models_are_registered_for_regression():
    assert MODELS.get("mlp") is MLP and MODELS.get("cnn_regressor") is CNNRegressor
    for name in ("mlp", "cnn_regressor"):
        assert MODELS.meta(name)["tasks"] == ("regression",)
        cls = MODELS.get(name)
        assert cls.supported_scales is None and cls.pre_upsampled is False


@pytest.mark.parametrize("input_shape", [[5], [1], [3, 8, 8], [2, 3]])
@pytest.mark.parametrize("num_outputs", [1, 3])
@pytest.mark.parametrize("extra", [{}, {"batch_norm": True, "dropout": 0.2, "activation": "gelu"}])
def test_mlp_output_shape(input_shape, num_outputs, extra):
    model = MLP(input_shape, num_outputs, hidden_sizes=[7, 5], **extra)
    y = model(torch.rand(4, *input_shape))
    assert y.shape == (4, num_outputs) and y.dtype == torch.float32


def test_mlp_layers():
    model = MLP([6], 2, hidden_sizes=[8, 4], activation="tanh", dropout=0.5, batch_norm=True)
    kinds = [type(m).__name__ for m in model.net]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout",
                     "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear"]
    assert model.net[1].in_features == 6 and model.net[-1].out_features == 2
    plain = [type(m).__name__ for m in MLP([3, 4, 4], 1).net]
    assert plain == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert MLP([3, 4, 4], 1).net[1].in_features == 48


@pytest.mark.parametrize("kwargs, named", [
    ({"hidden_sizes": []}, "hidden_sizes"),
    ({"hidden_sizes": [8, 0]}, "hidden_sizes"),
    ({"hidden_sizes": [8, -3]}, "hidden_sizes"),
    ({"hidden_sizes": [8.5]}, "hidden_sizes"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"activation": "swish"}, "activation"),
    ({"num_outputs": 0}, "num_outputs"),
    ({"input_shape": [5, 0]}, "input_shape"),
    ({"input_shape": [-1]}, "input_shape"),
    ({"input_shape": []}, "input_shape"),
    ({"batch_norm": "yes"}, "batch_norm"),
])
def test_mlp_bad_parameters_are_named(kwargs, named):
    args = {"input_shape": [5], "num_outputs": 2, **kwargs}
    with pytest.raises(ValueError, match=named):
        MLP(**args)


def test_mlp_unknown_activation_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="relu, gelu, silu, tanh, leaky_relu"):
        MLP([5], 1, activation="swish")


def test_mlp_learns_a_linear_map():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 5, generator=g)
    y = x @ torch.randn(5, 2, generator=g) + torch.tensor([0.5, -1.0])
    torch.manual_seed(0)
    losses = _fit(MLP([5], 2, hidden_sizes=[32]), x, y, steps=150, lr=1e-2)
    assert losses[-1] < 0.05 * losses[0]


@pytest.mark.parametrize("input_shape, features", [
    ([3, 32, 32], (128, 4, 4)),  # 32 -> 16 -> 8 -> 4: three downsamplings, widths 32, 64, 128
    ([1, 8, 8], (64, 4, 4)),     # one downsampling, then 4 -> 2 would fall below 4
    ([3, 8, 20], (64, 4, 10)),   # the shorter side decides
    ([3, 17, 33], (128, 5, 9)),  # odd sizes round up: 17 -> 9 -> 5
    ([1, 7, 7], (64, 4, 4)),     # 7 -> 4 still stays at 4
])
@pytest.mark.parametrize("num_outputs", [1, 2])
def test_cnn_regressor_shapes(input_shape, features, num_outputs):
    torch.manual_seed(0)
    model = CNNRegressor(input_shape, num_outputs)
    x = torch.rand(2, *input_shape)
    assert model.features(x).shape == (2, *features)
    assert model(x).shape == (2, num_outputs)


def test_cnn_regressor_widths_are_capped():
    model = CNNRegressor([3, 256, 256], 1, num_features=8, num_blocks=6)
    x = torch.rand(1, 3, 256, 256)
    assert model.features(x).shape == (1, 32, 8, 8)  # five halvings, width capped at 4 x 8
    assert model(x).shape == (1, 1)


def test_cnn_regressor_default_size():
    model = CNNRegressor([3, 32, 32], 1)
    n = sum(p.numel() for p in model.parameters())
    assert 500_000 < n < 1_500_000


@pytest.mark.parametrize("shape", [[32, 32], [3, 32, 32, 1], [5], []])
def test_cnn_regressor_needs_images(shape):
    with pytest.raises(ValueError, match=r"cnn_regressor needs image inputs \(channels x height x "
                                         r"width\), got input shape"):
        CNNRegressor(shape, 1)


@pytest.mark.parametrize("kwargs, named", [
    ({"num_features": 0}, "num_features"),
    ({"num_blocks": 0}, "num_blocks"),
    ({"num_blocks": 2.0}, "num_blocks"),
    ({"dropout": 1.5}, "dropout"),
    ({"num_outputs": 0}, "num_outputs"),
    ({"input_shape": [3, 0, 32]}, "input_shape"),
    ({"batch_norm": 1}, "batch_norm"),
])
def test_cnn_regressor_bad_parameters_are_named(kwargs, named):
    args = {"input_shape": [3, 16, 16], "num_outputs": 1, **kwargs}
    with pytest.raises(ValueError, match=named):
        CNNRegressor(**args)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_cnn_regressor_fits_a_tiny_batch(batch_norm):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(8, 3, 16, 16, generator=g)
    y = torch.randn(8, 2, generator=g)
    torch.manual_seed(0)
    model = CNNRegressor([3, 16, 16], 2, num_features=8, num_blocks=2, batch_norm=batch_norm)
    losses = _fit(model, x, y, steps=80, lr=3e-3)
    assert losses[-1] < 0.1 * losses[0]


# ---------------------------------------------------------------- metrics

def _metric(name: str):
    return METRICS.get(name)()


def _random_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) targets on different scales and noisy predictions of them."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.01] + [0.0, 100.0, 5.0]
    pred = target + rng.normal(size=(200, 3)) * [0.5, 5.0, 0.02]
    return pred, target


def test_metric_attributes():
    expected = {"mae": ("MAE", False), "rmse": ("RMSE", False), "r2": ("R2", True),
                "pearson": ("Pearson", True)}
    for key, (name, higher) in expected.items():
        m = _metric(key)
        assert (m.name, m.higher_is_better, m.protocol, m.task) == (name, higher, False, "regression")
        assert METRICS.meta(key)["tasks"] == ("regression",)  # its scope
        # a variance needs two samples: an eval set of one is refused for R2 and Pearson
        assert METRICS.meta(key).get("min_samples", 1) == (2 if higher else 1)
    assert _metric("r2").name == METRICS.get("r2")(device="cpu").name


def test_metrics_match_numpy_and_scipy():
    pred, target = _random_pair()
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    err = pred - target
    ss_tot = ((target - target.mean(0)) ** 2).sum(0)
    expected = {
        "mae": np.abs(err).mean(0),
        "rmse": np.sqrt((err ** 2).mean(0)),
        "r2": 1 - (err ** 2).sum(0) / ss_tot,
        "pearson": np.array([stats.pearsonr(pred[:, j], target[:, j])[0] for j in range(3)]),
    }
    for key, want in expected.items():
        got = _metric(key)(p, t)
        assert got.shape == (3,) and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, err_msg=key)


def test_metrics_are_float64_for_float32_inputs():
    pred, target = _random_pair(1)
    got = _metric("r2")(torch.from_numpy(pred).float(), torch.from_numpy(target).float())
    assert got.dtype == torch.float64


def test_perfect_prediction():
    _, target = _random_pair(2)
    t = torch.from_numpy(target)
    assert torch.equal(_metric("mae")(t, t.clone()), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(_metric("rmse")(t, t.clone()), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(_metric("r2")(t, t.clone()), torch.ones(3, dtype=torch.float64))
    np.testing.assert_allclose(_metric("pearson")(t, t.clone()).numpy(), 1.0, rtol=0, atol=1e-15)


def test_constant_columns_give_nan():
    pred, target = _random_pair(3)
    target[:, 1] = 0.1  # a constant whose mean is not exactly 0.1 in floating point
    pred[:, 2] = 4.0
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    r2 = _metric("r2")(p, t)
    assert torch.isnan(r2[1]) and not torch.isnan(r2[[0, 2]]).any()
    pearson = _metric("pearson")(p, t)
    assert torch.isnan(pearson[1]) and torch.isnan(pearson[2]) and not torch.isnan(pearson[0])
    assert not torch.isnan(_metric("mae")(p, t)).any()


def test_anticorrelated_and_mean_predictors():
    t = torch.linspace(0, 1, 50, dtype=torch.float64)[:, None]
    assert _metric("pearson")(-t, t).item() == pytest.approx(-1.0, abs=1e-15)
    assert _metric("r2")(torch.full_like(t, t.mean().item()), t).item() == pytest.approx(0.0, abs=1e-12)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        _metric("mae")(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        _metric("r2")(torch.zeros(4), torch.zeros(4))


# ---------------------------------------------------------------- blur set

TRAIN_COUNT, EVAL_COUNT = 24, 6


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["image", "blur_sigma"]
        return list(reader)


@pytest.fixture(scope="module")
def blur_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blur")
    build_blur_set(root, "train", TRAIN_COUNT)
    build_blur_set(root, "eval", EVAL_COUNT)
    return root


def test_blur_set_layout(blur_root):
    for split, count, photos in (("train", TRAIN_COUNT, blur_set.TRAIN_PHOTOS),
                                 ("valid", EVAL_COUNT, blur_set.VALID_PHOTOS)):
        images = blur_root / split / "images"
        rows = _rows(blur_root / split / "targets.csv")
        assert len(rows) == count
        assert sorted(r["image"] for r in rows) == sorted(p.name for p in images.iterdir())
        per_photo = {p: sum(r["image"].startswith(p + "_") for r in rows) for p in photos}
        assert set(per_photo.values()) == {count // len(photos)}
        for r in rows:
            img = read_rgb(images / r["image"])
            assert img.shape == (32, 32, 3) and img.dtype == np.uint8
            sigma = float(r["blur_sigma"])
            assert 0.4 <= sigma <= 3.0
            assert r["blur_sigma"] == repr(sigma)  # full precision, so re-degrading is exact
    assert sorted(p.name for p in blur_root.iterdir()) == ["train", "valid"]  # no temp folders left


def test_blur_set_returns_paths_and_is_not_rebuilt(blur_root):
    csv_path = blur_root / "train" / "targets.csv"
    before = csv_path.stat().st_mtime_ns
    images_dir, targets = build_blur_set(blur_root, "train", TRAIN_COUNT)
    assert (images_dir, targets) == (blur_root / "train" / "images", csv_path)
    assert csv_path.stat().st_mtime_ns == before
    assert build_blur_set(blur_root, "eval", EVAL_COUNT)[1] == blur_root / "valid" / "targets.csv"


def test_blur_set_is_deterministic(blur_root, tmp_path):
    build_blur_set(tmp_path, "train", TRAIN_COUNT)
    first, second = blur_root / "train", tmp_path / "train"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_saved_patches_are_reproduced_from_their_sigma(blur_root):
    rows = {r["image"]: float(r["blur_sigma"]) for r in _rows(blur_root / "train" / "targets.csv")}
    samples = list(blur_samples("train", TRAIN_COUNT))
    assert [s.name for s in samples] == list(rows)
    for s in samples:
        assert s.sigma == rows[s.name]
        blurred = np.clip(np.rint(gaussian_blur(s.hr, rows[s.name])), 0, 255).astype(np.uint8)
        saved = read_rgb(blur_root / "train" / "images" / s.name)
        np.testing.assert_array_equal(downscale_uint8(blurred, 2), saved, err_msg=s.name)


def test_patches_have_detail_and_prefixes_are_stable():
    few = list(blur_samples("valid", 4))
    many = list(blur_samples("valid", 10))
    assert [s.name for s in few] == ["chelsea_0000.png", "chelsea_0001.png",
                                     "coffee_0000.png", "coffee_0001.png"]
    for s in few:
        twin = next(m for m in many if m.name == s.name)
        assert np.array_equal(s.hr, twin.hr) and s.sigma == twin.sigma
        assert s.hr.shape == (64, 64, 3) and gradient_energy(s.hr) >= blur_set.MIN_GRADIENT_ENERGY


def test_sigmas_cover_their_range():
    sigmas = np.array([s.sigma for s in blur_samples("valid")])  # the full default count
    assert len(sigmas) == 240
    assert sigmas.min() >= 0.4 and sigmas.max() <= 3.0
    assert sigmas.min() < 0.5 and sigmas.max() > 2.9  # uniform over the whole range


def test_wider_blur_gives_smoother_patches():
    for s in blur_samples("train", 12):
        sharp, soft = degrade(s.hr, 0.5), degrade(s.hr, 2.5)
        assert gradient_energy(soft) < 0.7 * gradient_energy(sharp), s.name


def test_gaussian_kernel_and_blur_match_a_direct_convolution():
    k = gaussian_kernel(1.3)
    assert k.shape == (21, 21) and k.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k.T, rtol=0, atol=0)
    assert np.unravel_index(k.argmax(), k.shape) == (10, 10)
    img = next(blur_samples("train", 1)).hr
    # numpy's 'reflect' padding is scipy.ndimage's 'mirror'
    direct = np.stack([ndimage.convolve(img[..., c].astype(float), k, mode="mirror")
                       for c in range(3)], axis=-1)
    np.testing.assert_allclose(gaussian_blur(img, 1.3), direct, rtol=0, atol=1e-9)
    with pytest.raises(ValueError):
        gaussian_kernel(0.0)


def test_blur_set_argument_errors(blur_root):
    with pytest.raises(ValueError, match="role"):
        build_blur_set(blur_root, "test")
    with pytest.raises(ValueError, match="holds 24 samples, 1200 were asked"):
        build_blur_set(blur_root, "train")
    with pytest.raises(ValueError, match="count"):
        build_blur_set(blur_root / "other", "train", 0)


def test_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_write(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        path.write_bytes(b"")

    monkeypatch.setattr(blur_set, "write_png", failing_write)
    with pytest.raises(OSError, match="disk full"):
        build_blur_set(tmp_path, "eval", 4)
    assert list(tmp_path.iterdir()) == []



def test_a_parallel_builder_finishing_first_wins(tmp_path, monkeypatch):
    real = blur_set.blur_samples

    def racing(split, count=None):
        # Another process completes the same set while this one is still generating.
        monkeypatch.setattr(blur_set, "blur_samples", real)
        build_blur_set(tmp_path, "eval", 4)
        monkeypatch.setattr(blur_set, "blur_samples", racing)
        yield from real(split, count)

    monkeypatch.setattr(blur_set, "blur_samples", racing)
    images_dir, targets = build_blur_set(tmp_path, "eval", 4)
    assert len(_rows(targets)) == 4 and len(list(images_dir.iterdir())) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["valid"]
