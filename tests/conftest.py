"""Shared fixtures: tiny real image sets cut from scikit-image's photos, and config writers."""
from __future__ import annotations

import csv
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from rumpy.data.blur_set import build_blur_set
from rumpy.data.images import write_png
from rumpy.core.summary import TIMING_COLUMNS
from rumpy.core.checkpoint import load_checkpoint

# The tests that press Ctrl+C send SIGINT to the commands they start. A shell's background job
# (`pytest &`, nohup) starts with SIGINT ignored and its children inherit that, and rumpy keeps an
# ignored SIGINT ignored (as nohup asks): give the children the default a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _temporary_folders_under_pytests_own(tmp_path_factory):
    """--dev/--overfit runs make their run folder in a temporary folder, torchrun makes its own:
    kept under pytest's base folder (and its clean-up), the suite leaves nothing in /tmp."""
    import os
    import tempfile
    where = str(tmp_path_factory.mktemp("tmpdir"))
    before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = where
    yield
    if before[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before[0]
    tempfile.tempdir = before[1]


# -- reading a node back (shared by the tree, regression and golden tests) ----------------------
def rows(node: Path) -> list[dict]:
    """A node's summary.csv rows, as strings (exact comparison)."""
    with open(node / "result_outputs" / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def no_timing(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rs]


def weights(node: Path, epoch: int) -> dict:
    return load_checkpoint(node / "saved_models" / f"epoch_{epoch}.pt")["parts"]["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _tiles(img: np.ndarray, size: int, count: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    out = []
    for k in range(count):
        top = (k * 97) % (h - size)
        left = (k * 131) % (w - size)
        out.append(np.ascontiguousarray(img[top: top + size, left: left + size, :3]))
    return out


def legacy_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR images the fixtures (and tests/golden) were made with: PyTorch's antialiased
    bicubic, not MATLAB's (rumpy.data.images.downscale_uint8 since issue 12). Kept so the golden
    summaries compare training on the same data; resampling is tested in test_matlab_bicubic."""
    t = torch.from_numpy(hr).permute(2, 0, 1)[None].double() / 255.0
    lr = torch.nn.functional.interpolate(t, size=(hr.shape[0] // scale, hr.shape[1] // scale),
                                         mode="bicubic", align_corners=False, antialias=True)
    return lr.clamp(0, 1).mul(255.0).round()[0].permute(1, 2, 0).to(torch.uint8).numpy()


def make_pairs(root: Path, scale: int, hr_size: int, photos: list[str], per_photo: int,
               naming: str = "div2k") -> tuple[Path, Path]:
    hr_dir, lr_dir = root / "HR", root / f"LR_x{scale}"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    n = 0
    for name in photos:
        for tile in _tiles(getattr(data, name)(), hr_size, per_photo):
            n += 1
            write_png(hr_dir / f"{n:04d}.png", tile)
            stem = f"{n:04d}x{scale}" if naming == "div2k" else f"{n:04d}"
            write_png(lr_dir / f"{stem}.png", legacy_downscale(tile, scale))
    return lr_dir, hr_dir


@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory) -> dict[str, Path]:
    """x2 sets of real photo tiles: 8 training pairs of 48x48 HR, 2 validation pairs of 40x40."""
    root = tmp_path_factory.mktemp("tiny_sets")
    train_lr, train_hr = make_pairs(root / "train", 2, 48, ["astronaut", "coffee"], 4)
    val_lr, val_hr = make_pairs(root / "val", 2, 40, ["chelsea"], 2, naming="same")
    return {"train_lr": train_lr, "train_hr": train_hr, "val_lr": val_lr, "val_hr": val_hr,
            "root": root}


def tiny_toml(sets: dict[str, Path], save_loc: Path, cache_dir: Path, *, experiment="tiny",
              extra_training="", extra_params="", extra_data="", model="edsr",
              params='num_features = 8\nnum_blocks = 1', num_epochs=2, aim=False) -> str:
    return textwrap.dedent(f"""\
        experiment = "{experiment}"
        experiment_save_loc = "{save_loc}"

        [training]
        num_epochs = {num_epochs}
        seed = 3
        gpu = "off"
        metrics = ["PSNR", "SSIM"]
        num_samples = 1
        output_interval_s = 0
        aim_track = {{aim}}
        {extra_training}

        [model]
        name = "{model}"

        [model.internal_params]
        scale = 2
        lr = 1e-3
        {{params}}
        {extra_params}

        [data]
        batch_size = 4
        dataloader_threads = 0
        cache = "memory"
        cache_dir = "{cache_dir}"
        {extra_data}

        [data.training_sets.tiles]
        lr = "{sets['train_lr']}"
        hr = "{sets['train_hr']}"
        crop = 12

        [data.eval_sets.chelsea]
        lr = "{sets['val_lr']}"
        hr = "{sets['val_hr']}"
        """).replace("{params}", params).replace("{aim}", "true" if aim else "false")


@pytest.fixture
def write_config(tmp_path, tiny_sets):
    """write_config(**kw) -> path of a tiny, valid TOML (keywords as in tiny_toml)."""
    def write(name: str = "cfg.toml", text: str | None = None, **kw) -> Path:
        path = tmp_path / name
        path.write_text(text if text is not None else
                        tiny_toml(tiny_sets, tmp_path / "Results", tmp_path / "cache", **kw))
        return path
    return write


def pytest_collection_modifyitems(config, items):
    """`cuda` tests need a CUDA device: skipped without one (CI), run by benchmarks/gpu_check.sh."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# -- regression data (shared by the regression, inference and model-task tests) ------------------
def _targets(x: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], 3 + x[:, 3] ** 2 - x[:, 4]], axis=1)


@pytest.fixture(scope="session")
def regression_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("regression")
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 384), ("valid", 96)):
        x = rng.normal(size=(n, 6)).astype(np.float32)
        y = _targets(x) + 0.05 * rng.normal(size=(n, 2))
        np.savez(root / f"{split}.npz", inputs=x, targets=y)
        out[f"{split}_npz"] = root / f"{split}.npz"
        with open(root / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([f"x{i}" for i in range(6)] + ["wave", "bowl"])
            writer.writerows(np.concatenate([x, y], axis=1).tolist())
        out[f"{split}_csv"] = root / f"{split}.csv"
    images, targets = build_blur_set(root / "blur", "train", count=48)
    out.update(train_images=images, train_targets=targets)
    images, targets = build_blur_set(root / "blur", "eval", count=16)
    out.update(valid_images=images, valid_targets=targets)
    return out


def stop_after(batches: int) -> type:
    """A StopRequest to monkeypatch over rumpy.training.trainer.StopRequest: a Ctrl+C after
    `batches` training batches of this process."""
    from rumpy.training import trainer
    from rumpy.training.handler import NetworkHandler

    class StopAt(trainer.StopRequest):
        def __enter__(self):
            stop = super().__enter__()
            original = NetworkHandler.train_step
            count = [0]

            def step(handler, batch, **kw):
                loss = original(handler, batch, **kw)
                count[0] += 1
                if count[0] == batches:
                    stop.requested = True
                return loss
            self._original = original
            NetworkHandler.train_step = step
            return stop

        def __exit__(self, *exc):
            NetworkHandler.train_step = self._original
            return super().__exit__(*exc)
    return StopAt
