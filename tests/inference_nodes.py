"""Nodes trained for real once per test session, shared by tests/test_inference.py and
tests/test_export_model.py: a tiny EDSR x2 (two eval sets, a branch forked at epoch 1), an MLP on
feature arrays and a small CNN on images with targets. Each node's TRAINING data is deleted
after training, so every inference test also proves that it needs only the node and the eval
sets."""
from __future__ import annotations

import csv
import shutil
import textwrap
from pathlib import Path

import numpy as np
from conftest import make_pairs, tiny_toml
from skimage import data

from rumpy.cli.train import main as train_main
from rumpy.data.images import write_png

_CACHE: dict[str, dict] = {}


def _train(path: Path, *flags: str) -> None:
    assert train_main(["--parameters", str(path), *flags]) == 0


def sr_nodes(factory) -> dict:
    """{'root': the run, 'branch': its branch 'warm' (forked at 1, epochs 2-3), 'eval_lr',
    'eval_hr', 'coffee_lr', 'coffee_hr', 'cfg': the TOML}."""
    if "sr" in _CACHE:
        return _CACHE["sr"]
    base = factory.mktemp("inference_sr")
    train_lr, train_hr = make_pairs(base / "train", 2, 48, ["astronaut", "coffee"], 4)
    val_lr, val_hr = make_pairs(base / "val", 2, 40, ["chelsea"], 2, naming="same")
    coffee_lr, coffee_hr = make_pairs(base / "coffee", 2, 36, ["coffee"], 2)
    sets = {"train_lr": train_lr, "train_hr": train_hr, "val_lr": val_lr, "val_hr": val_hr}
    text = tiny_toml(sets, base / "Results", base / "cache", experiment="edsr_tiny",
                     extra_training='logging = "text"') + textwrap.dedent(f"""
        [data.eval_sets.coffee]
        lr = "{coffee_lr}"
        hr = "{coffee_hr}"
        """)
    cfg = base / "edsr.toml"
    cfg.write_text(text)
    _train(cfg)
    _train(cfg, "--continue_from_epoch", "1", "--new_branch", "--new_branch_name", "warm",
           "--num_epochs", "3")
    shutil.rmtree(base / "train")  # inference must not need the training sets
    root = base / "Results" / "edsr_tiny"
    _CACHE["sr"] = {"root": root, "branch": root / "warm", "eval_lr": val_lr, "eval_hr": val_hr,
                    "coffee_lr": coffee_lr, "coffee_hr": coffee_hr, "cfg": cfg, "base": base}
    return _CACHE["sr"]


def _targets(x: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], 30 + 4 * x[:, 3] - x[:, 4]], axis=1)


def regression_node(factory) -> dict:
    """An MLP on 6 features -> 2 targets ('wave', 'line'); {'root', 'valid': (x, y), ...}."""
    if "reg" in _CACHE:
        return _CACHE["reg"]
    base = factory.mktemp("inference_reg")
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 192), ("valid", 48)):
        x = rng.normal(size=(n, 6)).astype(np.float32)
        y = _targets(x) + 0.05 * rng.normal(size=(n, 2))
        np.savez(base / f"{split}.npz", inputs=x, targets=y)
        arrays[split] = (x, y)
    cfg = base / "reg.toml"
    cfg.write_text(textwrap.dedent(f"""\
        experiment = "mlp_tiny"
        experiment_save_loc = "{base / 'Results'}"
        task = "regression"
        [training]
        num_epochs = 3
        seed = 5
        gpu = "off"
        aim_track = false
        logging = "text"
        [model]
        name = "mlp"
        [model.internal_params]
        lr = 3e-3
        hidden_sizes = [16, 16]
        [data]
        batch_size = 32
        eval_batch_size = 16
        dataloader_threads = 0
        [data.training_sets.points]
        type = "arrays"
        file = "{base / 'train.npz'}"
        target_names = ["wave", "line"]
        [data.eval_sets.held_out]
        type = "arrays"
        file = "{base / 'valid.npz'}"
        target_names = ["wave", "line"]
        """))
    _train(cfg)
    (base / "train.npz").unlink()
    _CACHE["reg"] = {"root": base / "Results" / "mlp_tiny", "valid": arrays["valid"],
                     "valid_file": base / "valid.npz", "cfg": cfg, "base": base}
    return _CACHE["reg"]


def _image_set(folder: Path, photos: list[str], per_photo: int, rng) -> None:
    """16x16 photo crops; targets: their mean brightness and a noise level added to them."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for name in photos:
        img = getattr(data, name)()[..., :3]
        for k in range(per_photo):
            top, left = rng.integers(0, img.shape[0] - 16), rng.integers(0, img.shape[1] - 16)
            noise = float(rng.uniform(0, 20))
            crop = img[top: top + 16, left: left + 16].astype(np.float64)
            crop = np.clip(crop + rng.normal(0, noise, crop.shape), 0, 255).astype(np.uint8)
            file = f"{name}_{k:02d}.png"
            write_png(folder / "images" / file, crop)
            rows.append((file, float(crop.mean()) / 255, noise))
    with open(folder / "targets.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "brightness", "noise"])
        writer.writerows(rows)


def image_regression_node(factory) -> dict:
    """A small cnn_regressor on 16x16 images with targets."""
    if "img" in _CACHE:
        return _CACHE["img"]
    base = factory.mktemp("inference_img")
    rng = np.random.default_rng(2)
    _image_set(base / "train", ["astronaut", "coffee"], 12, rng)
    _image_set(base / "valid", ["chelsea"], 8, rng)
    cfg = base / "img.toml"
    cfg.write_text(textwrap.dedent(f"""\
        experiment = "cnn_tiny"
        experiment_save_loc = "{base / 'Results'}"
        task = "regression"
        [training]
        num_epochs = 2
        seed = 2
        gpu = "off"
        aim_track = false
        logging = "text"
        [model]
        name = "cnn_regressor"
        [model.internal_params]
        lr = 3e-3
        num_features = 4
        num_blocks = 2
        [data]
        batch_size = 8
        eval_batch_size = 4
        dataloader_threads = 0
        cache = "memory"
        cache_dir = "{base / 'cache'}"
        [data.training_sets.patches]
        type = "images_with_targets"
        images = "{base / 'train' / 'images'}"
        targets = "{base / 'train' / 'targets.csv'}"
        [data.eval_sets.chelsea]
        type = "images_with_targets"
        images = "{base / 'valid' / 'images'}"
        targets = "{base / 'valid' / 'targets.csv'}"
        """))
    _train(cfg)
    shutil.rmtree(base / "train")
    _CACHE["img"] = {"root": base / "Results" / "cnn_tiny", "valid": base / "valid", "base": base}
    return _CACHE["img"]
