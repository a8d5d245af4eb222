"""Pairing, standard splits, crops that stay aligned, caches that agree, LR preparation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rumpy.data.builtin import quickstart
from rumpy.data.cache import ImageStore
from rumpy.data.datasets import EvalImages, PairedImages, TrainPatches
from rumpy.data.loaders import EpochSampler, eval_batches
from rumpy.data.images import downscale_uint8, read_rgb, write_png
from rumpy.data.pairs import pair_folders
from rumpy.data.prepare import prepare_lr
from rumpy.data.standard import select_split, training_split_warning


def _set(sets, mode="memory", tmp=None) -> PairedImages:
    pairs, _ = pair_folders(sets["train_lr"], sets["train_hr"], 2)
    return PairedImages("tiles", [p.key for p in pairs],
                        ImageStore([p.lr for p in pairs], mode, tmp),
                        ImageStore([p.hr for p in pairs], mode, tmp), 2)


def test_div2k_naming_pairs_and_plain_naming(tiny_sets):
    pairs, unmatched = pair_folders(tiny_sets["train_lr"], tiny_sets["train_hr"], 2)
    assert [p.key for p in pairs] == [f"{i:04d}" for i in range(1, 9)]
    assert pairs[0].lr.name == "0001x2.png" and pairs[0].hr.name == "0001.png"
    assert unmatched == []
    pairs, _ = pair_folders(tiny_sets["val_lr"], tiny_sets["val_hr"], 2)
    assert pairs[0].lr.name == pairs[0].hr.name == "0001.png"


def test_crops_are_exactly_aligned(tiny_sets):
    """Downscaling the HR patch reproduces the LR patch: no half-pixel or off-by-scale shift."""
    images = _set(tiny_sets)
    ds = TrainPatches([images], crop=8, augment=[True], repeat=[3], seed=5)
    seen_positions = set()
    for idx in range(len(ds)):
        lr, hr = ds[(1, idx)]["lq"], ds[(1, idx)]["gt"]
        assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16) and lr.dtype == torch.uint8
        # the LR patch is a piece of the LR image, the HR patch the same piece of the HR image
        full_lr, full_hr = images.pair(idx % len(images))
        redone = downscale_uint8(hr.permute(1, 2, 0).numpy(), 2)
        # bicubic near patch borders sees different neighbours; the interior must agree
        diff = np.abs(redone[2:-2, 2:-2].astype(int) - lr.permute(1, 2, 0).numpy()[2:-2, 2:-2])
        assert diff.max() <= 2
        seen_positions.add(tuple(lr.flatten()[:6].tolist()))
    assert len(seen_positions) > len(ds) // 2  # crops really move


def test_crop_is_a_subimage_of_the_pair(tiny_sets):
    images = _set(tiny_sets)
    ds = TrainPatches([images], crop=8, augment=[False], repeat=[1], seed=1)
    lr, hr = ds[(2, 0)]["lq"], ds[(2, 0)]["gt"]
    full_lr, full_hr = images.pair(0)
    lr_np = lr.permute(1, 2, 0).numpy()
    hits = [(t, l) for t in range(full_lr.shape[0] - 7) for l in range(full_lr.shape[1] - 7)
            if np.array_equal(full_lr[t:t + 8, l:l + 8], lr_np)]
    assert hits, "LR patch is not a crop of the LR image"
    t, l = hits[0]
    assert np.array_equal(full_hr[2 * t: 2 * t + 16, 2 * l: 2 * l + 16], hr.permute(1, 2, 0).numpy())


def test_samples_depend_only_on_seed_epoch_index(tiny_sets):
    images = _set(tiny_sets)
    a = TrainPatches([images], crop=8, augment=[True], repeat=[1], seed=1)
    b = TrainPatches([images], crop=8, augment=[True], repeat=[1], seed=1)
    assert all(torch.equal(a[(4, i)]["gt"], b[(4, i)]["gt"]) for i in range(len(a)))
    assert any(not torch.equal(a[(4, i)]["gt"], a[(5, i)]["gt"]) for i in range(len(a)))
    s = EpochSampler(10, seed=1)
    s.set_epoch(2)
    first = list(s)
    s.set_epoch(3)
    assert list(s) != first and sorted(i for _, i in list(s)) == list(range(10))
    s.set_epoch(2)
    assert list(s) == first


def test_cache_modes_agree(tiny_sets, tmp_path):
    mem, disk, off = (_set(tiny_sets, m, tmp_path) for m in ("memory", "disk", "off"))
    for i in range(len(mem)):
        for a, b in ((mem, disk), (mem, off)):
            assert np.array_equal(a.pair(i)[0], b.pair(i)[0])
            assert np.array_equal(a.pair(i)[1], b.pair(i)[1])
    assert len(list((tmp_path / "decoded").rglob("*.npy"))) == 16
    _set(tiny_sets, "disk", tmp_path)  # a second store reuses the entries
    assert len(list((tmp_path / "decoded").rglob("*.npy"))) == 16


def test_grayscale_and_formats_read_as_rgb(tmp_path):
    gray = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.bmp")
    Image.fromarray(rgb).save(tmp_path / "c.tif")
    g = read_rgb(tmp_path / "g.png")
    assert g.shape == (8, 8, 3) and np.array_equal(g[..., 0], gray) and np.array_equal(g[..., 2], gray)
    assert np.array_equal(read_rgb(tmp_path / "c.bmp"), rgb)
    assert np.array_equal(read_rgb(tmp_path / "c.tif"), rgb)


def test_standard_split_selected_only_for_a_whole_set():
    whole = [f"{i:04d}" for i in range(1, 901)]
    train, note = select_split("DIV2K", "train", whole)
    assert train == whole[:800] and "0001-0800" in note
    valid, _ = select_split("div2k", "eval", whole)
    assert valid == whole[800:]
    # a folder holding only the validation split is used as it is
    assert select_split("DIV2K", "eval", whole[800:]) == (whole[800:], "")
    assert select_split("my_photos", "train", whole[:5]) == (whole[:5], "")
    assert "only images of the standard training split" in training_split_warning(
        "DIV2K", "eval", whole[:800])
    assert training_split_warning("DIV2K", "eval", whole[800:]) == ""
    assert training_split_warning("DIV2K", "train", whole[:800]) == ""


def test_eval_batches_group_equal_sizes():
    sizes = [(4, 4), (4, 4), (4, 4), (5, 4), (4, 4)]
    assert eval_batches(sizes, 2) == [[0, 1], [2], [3], [4]]
    assert eval_batches(sizes, 1) == [[0], [1], [2], [3], [4]]


def test_eval_crop_is_centred_and_aligned(tiny_sets):
    images = _set(tiny_sets)
    lr, hr = EvalImages(images, crop=10)[0]["lq"], EvalImages(images, crop=10)[0]["gt"]
    full_lr, full_hr = images.pair(0)
    assert np.array_equal(lr.permute(1, 2, 0).numpy(), full_lr[7:17, 7:17])
    assert np.array_equal(hr.permute(1, 2, 0).numpy(), full_hr[14:34, 14:34])


def test_prepare_data_crops_to_scale_multiple_and_says_so(tmp_path, caplog):
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    img = np.random.default_rng(1).integers(0, 255, (50, 47, 3), dtype=np.uint8)
    write_png(hr_dir / "0001.png", img)
    with caplog.at_level("INFO", logger="rumpy"):
        assert prepare_lr(hr_dir, tmp_path / "lr", 4, hr_out_dir=tmp_path / "hr_cropped") == 1
    assert "0001.png: 47x50 cropped to 44x48" in caplog.text
    lr = read_rgb(tmp_path / "lr" / "0001x4.png")
    assert lr.shape == (12, 11, 3)
    assert np.array_equal(read_rgb(tmp_path / "hr_cropped" / "0001.png"), img[:48, :44])
    assert np.array_equal(lr, downscale_uint8(img[:48, :44], 4))


def test_bicubic_downscale_matches_pil_closely():
    """Our bicubic (a=-0.5, antialiased) is the resampler PIL and MATLAB use."""
    from skimage import data
    img = data.astronaut()[:240, :240]
    ours = downscale_uint8(img, 4).astype(int)
    pil = np.asarray(Image.fromarray(img).resize((60, 60), Image.BICUBIC)).astype(int)
    assert np.abs(ours - pil)[2:-2, 2:-2].mean() < 0.6


def test_quickstart_set_is_built_from_skimage_photos(tmp_path):
    lr_dir, hr_dir = quickstart(tmp_path, 3, "train")
    hr = sorted(p.name for p in hr_dir.iterdir())
    assert hr == sorted(f"{n}.png" for n in ("astronaut", "hubble_deep_field", "rocket", "retina",
                                             "immunohistochemistry", "motorcycle_left"))
    for name in hr:
        h = read_rgb(hr_dir / name)
        lr = read_rgb(lr_dir / name.replace(".png", "x3.png"))
        assert h.shape[0] % 12 == 0 and lr.shape[0] * 3 == h.shape[0]
    v_lr, v_hr = quickstart(tmp_path, 3, "eval")
    assert {p.stem for p in v_hr.iterdir()} == {"chelsea", "coffee"}
    assert quickstart(tmp_path, 3, "train") == (lr_dir, hr_dir)  # built once
