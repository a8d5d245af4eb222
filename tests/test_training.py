"""Real short trainings on tiny images: the run folder, determinism, reproducibility."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.results.samples import LABEL
from rumpy.core.summary import TIMING_COLUMNS
from rumpy.core.checkpoint import CorruptCheckpoint, load_checkpoint
from rumpy.training.setup import prepare


def _rows(run: Path) -> list[dict]:
    with open(run / "result_outputs" / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def _train(path: Path, *flags: str) -> None:
    assert train_main(["--parameters", str(path), *flags]) == 0


def test_short_training_writes_the_whole_run_folder(write_config, tmp_path):
    _train(write_config())
    run = tmp_path / "Results" / "tiny"
    out = run / "result_outputs"
    rows = _rows(run)
    assert list(rows[0]) == ["epoch", "train-loss", "learning-rate", "val-loss", "val-PSNR",
                             "val-SSIM", "epoch-time", "data-wait", "inherited"]
    assert all(r["inherited"] == "0" for r in rows)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r["val-PSNR"]) > 10 and 0 < float(r["val-SSIM"]) <= 1 for r in rows)
    assert float(rows[1]["train-loss"]) < float(rows[0]["train-loss"])
    for name in ("loss", "PSNR", "SSIM", "learning_rate"):
        with Image.open(out / f"{name}.png") as img:
            assert img.format == "PNG" and img.width > 300
    for epoch in (1, 2):
        samples = list((out / f"epoch_{epoch}_samples").glob("*.png"))
        assert [p.name for p in samples] == ["chelsea_0001.png"]
        with Image.open(samples[0]) as img:  # bicubic | SR | HR, each 40 px wide, labelled
            assert img.size == (3 * 40 + 2 * 4, 40 + LABEL)
        per_image = list(csv.DictReader(open(out / f"per_image_epoch_{epoch}.csv")))
        assert [r["image"] for r in per_image] == ["0001", "0002"]
        mean = sum(float(r["PSNR"]) for r in per_image) / 2
        assert mean == pytest.approx(float(rows[epoch - 1]["val-PSNR"]), abs=1e-9)
    baseline = list(csv.DictReader(open(out / "bicubic_baseline.csv")))
    assert baseline[0]["set"] == "chelsea" and float(baseline[0]["PSNR"]) > 20
    log = (run / "train.log").read_text()
    assert "epoch 2/2: train-loss" in log and "bicubic baseline on chelsea" in log
    assert "command: " in log and "tiles: 8 image pairs" in log  # logged before the folder existed
    assert "finished: best val-PSNR" in log
    assert (run / "config.toml").is_file()

    ckpt = load_checkpoint(run / "saved_models" / "epoch_2.pt")  # weights_only=True inside
    assert ckpt["epoch"] == 2 and ckpt["parts"]["loop"]["step"] == 4  # 8 images / batch 4
    assert ckpt["format"] == 2 and {"rng", "config", "summary_row"} <= set(ckpt)
    assert {"model", "optimizer", "scheduler", "scaler", "loop", "monitors", "task"} == \
        set(ckpt["parts"])
    assert (run / "saved_models" / "epoch_2.pt.sha256").is_file()


def test_checkpoint_restores_the_model(write_config, tmp_path):
    path = write_config()
    _train(path)
    run = tmp_path / "Results" / "tiny"
    cfg = load_config(run / "config.toml", {"experiment_name": "restored"})
    fresh = prepare(cfg)
    fresh.handler.model.load_state_dict(
        load_checkpoint(run / "saved_models" / "epoch_2.pt")["parts"]["model"])
    result = fresh.task.evaluate(fresh.handler)
    assert result.means["chelsea"]["PSNR"] == float(_rows(run)[1]["val-PSNR"])


@pytest.mark.slow
def test_same_config_and_seed_give_identical_results(write_config, tmp_path):
    path = write_config()
    _train(path, "--experiment_name", "a")
    _train(path, "--experiment_name", "b")
    a, b = tmp_path / "Results" / "a", tmp_path / "Results" / "b"
    assert _without_timing(_rows(a)) == _without_timing(_rows(b))
    wa = load_checkpoint(a / "saved_models" / "epoch_2.pt")["parts"]["model"]
    wb = load_checkpoint(b / "saved_models" / "epoch_2.pt")["parts"]["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    _train(path, "--experiment_name", "c", "--seed", "4")
    assert _without_timing(_rows(a)) != _without_timing(_rows(tmp_path / "Results" / "c"))


def test_worker_processes_do_not_change_results(write_config, tmp_path):
    """Crops come from (seed, epoch, index), so loading in worker processes changes nothing."""
    _train(write_config(), "--experiment_name", "main_process")
    text = write_config().read_text().replace("dataloader_threads = 0", "dataloader_threads = 2")
    _train(write_config(name="workers.toml", text=text), "--experiment_name", "with_workers")
    assert _without_timing(_rows(tmp_path / "Results" / "main_process")) == \
        _without_timing(_rows(tmp_path / "Results" / "with_workers"))


def test_resolved_config_alone_reproduces_the_run(write_config, tmp_path):
    _train(write_config())
    run = tmp_path / "Results" / "tiny"
    _train(run / "config.toml", "--experiment_name", "again")
    assert _without_timing(_rows(run)) == _without_timing(_rows(tmp_path / "Results" / "again"))


def test_eval_frequency_text_logging_and_extra_eval_set(write_config, tmp_path, tiny_sets):
    text = write_config(num_epochs=3, extra_training='eval_frequency = 2\nlogging = "text"').read_text()
    text += (f'\n[data.eval_sets.tiles_eval]\nlr = "{tiny_sets["train_lr"]}"\n'
             f'hr = "{tiny_sets["train_hr"]}"\ncutoff = 3\n')
    _train(write_config(text=text))
    run = tmp_path / "Results" / "tiny"
    rows = _rows(run)
    assert "val-tiles_eval-PSNR" in rows[0] and "val-tiles_eval-loss" in rows[0]
    assert rows[0]["val-PSNR"] == "" and rows[1]["val-PSNR"] != "" and rows[2]["val-PSNR"] != ""
    assert not list((run / "result_outputs").glob("*.png"))
    per_image = list(csv.DictReader(open(run / "result_outputs" / "per_image_epoch_2.csv")))
    assert [r["set"] for r in per_image].count("tiles_eval") == 3


@pytest.mark.parametrize("model,params", [("srcnn", "num_features = 8\nmid_features = 4"),
                                          ("safmn", "dim = 8\nnum_blocks = 1")])
def test_other_architectures_train(write_config, tmp_path, model, params):
    _train(write_config(model=model, params=params, num_epochs=1))
    rows = _rows(tmp_path / "Results" / "tiny")
    assert len(rows) == 1 and 0 < float(rows[0]["val-PSNR"]) < 100


def test_corrupt_checkpoint_is_detected(write_config, tmp_path):
    _train(write_config(num_epochs=1))
    ckpt = tmp_path / "Results" / "tiny" / "saved_models" / "epoch_1.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpoint, match="checksum mismatch"):
        load_checkpoint(ckpt)


def test_summary_columns_stay_stable_when_a_branch_changes_metrics(write_config, tmp_path):
    path = write_config(num_epochs=2)
    _train(path)
    psnr_only = path.with_name("psnr.toml")
    psnr_only.write_text(path.read_text().replace('"PSNR", "SSIM"', '"PSNR"'))
    assert train_main(["--parameters", str(psnr_only), "--continue_from_epoch", "1",
                       "--new_branch", "--new_branch_name", "psnr_only"]) == 0
    node = tmp_path / "Results" / "tiny"
    parent, branch = _rows(node), _rows(node / "psnr_only")
    # the parent's SSIM of the inherited epoch survives; the branch's own epoch has none
    assert list(branch[0]) == list(parent[0])
    assert branch[0]["val-SSIM"] == parent[0]["val-SSIM"] != ""
    assert branch[1]["val-SSIM"] == "" and branch[1]["val-PSNR"] != ""


def test_training_without_eval_sets(write_config, tmp_path):
    text = write_config().read_text()
    text = text[: text.index("[data.eval_sets.chelsea]")]
    _train(write_config(text=text))
    run = tmp_path / "Results" / "tiny"
    rows = _rows(run)
    assert list(rows[0]) == ["epoch", "train-loss", "learning-rate", "epoch-time", "data-wait",
                             "inherited"]
    assert (run / "saved_models" / "epoch_2.pt").is_file()
