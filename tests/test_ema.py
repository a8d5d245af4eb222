"""EMA weights (training.ema_decay): validated (and chosen as best) instead of the raw weights,
saved as the part `ema`, continued and forked exactly, used by eval and export by default."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import no_timing, rows

from rumpy.catalog import load_config
from rumpy.cli.train import main as train_main
from rumpy.config import ConfigError
from rumpy.core.checkpoint import load_checkpoint
from rumpy.inference.evaluate import evaluate_node
from rumpy.inference.export import export_model
from rumpy.inference.load import load_experiment
from rumpy.training.setup import prepare

EMA = 'ema_decay = 0.8\nvalidate_ema = "both"'
SINGLE_PARTS = {"model", "optimizer", "scheduler", "scaler", "loop", "monitors", "task"}


def train(path, *flags: str) -> int:
    return train_main(["--parameters", str(path), *flags])


def parts(node, epoch: int) -> dict:
    return load_checkpoint(node / "saved_models" / f"epoch_{epoch}.pt")["parts"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def ema_run(write_config, tmp_path):
    cfg = write_config(num_epochs=3, extra_training=EMA)
    assert train(cfg) == 0
    return cfg, tmp_path / "Results" / "tiny"


def test_validation_scores_ema_weights_and_best_follows_them(ema_run):
    _, node = ema_run
    table = rows(node)
    assert "val-raw-PSNR" in table[0] and "val-raw-SSIM" in table[0]
    assert all(r["val-PSNR"] != r["val-raw-PSNR"] for r in table)
    best = max(table, key=lambda r: float(r["val-PSNR"]))
    status = json.loads((node / "status.json").read_text())
    assert status["best"]["metric"] == "val-PSNR"
    assert status["best"]["epoch"] == int(best["epoch"])
    assert status["best"]["value"] == pytest.approx(float(best["val-PSNR"]))
    p = parts(node, 3)
    assert set(p) == SINGLE_PARTS | {"ema"}
    assert not same(p["ema"], p["model"])


def test_eval_and_export_use_the_ema_weights(ema_run):
    _, node = ema_run
    p = parts(node, 3)
    model = load_experiment(node, epoch=3)
    assert model.rumpy.weights == "ema" and same(model.state_dict(), p["ema"])
    raw = load_experiment(node, epoch=3, weights="raw")
    assert raw.rumpy.weights == "raw" and same(raw.state_dict(), p["model"])
    row = next(r for r in rows(node) if r["epoch"] == "3")
    report = evaluate_node(node, epoch=3)  # eval = validation of the same epoch: the EMA's
    assert report.sets[0].means["PSNR"] == pytest.approx(float(row["val-PSNR"]), abs=1e-9)
    report = evaluate_node(node, epoch=3, weights="raw")
    assert report.sets[0].means["PSNR"] == pytest.approx(float(row["val-raw-PSNR"]), abs=1e-9)
    exported = export_model(node, epoch=3, out_dir=node.parent / "export")
    assert exported.passed
    network = torch.jit.load(str(exported.file))
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.allclose(network(x), model(x), atol=1e-5)
        assert not torch.allclose(network(x), raw(x), atol=1e-5)


@pytest.mark.slow
def test_continue_and_fork_are_exact_with_ema(ema_run, tmp_path):
    cfg, whole = ema_run
    assert train(cfg, "--experiment_name", "split", "--num_epochs", "2") == 0
    assert train(cfg, "--experiment_name", "split", "--continue_from_epoch", "last") == 0
    split = tmp_path / "Results" / "split"
    assert no_timing(rows(split)) == no_timing(rows(whole))
    assert same(parts(split, 3)["ema"], parts(whole, 3)["ema"])
    # a fork with the same settings carries the EMA weights on: the parent's epoch 3
    assert train(cfg, "--continue_from_epoch", "1", "--new_branch", "--new_branch_name",
                 "again") == 0
    branch = whole / "again"
    assert no_timing(rows(branch))[1:] == no_timing(rows(whole))[1:]
    for key in ("model", "ema", "optimizer"):
        a, b = parts(branch, 3)[key], parts(whole, 3)[key]
        assert (same(a, b) if key != "optimizer" else
                all(torch.equal(a["state"][i]["exp_avg"], b["state"][i]["exp_avg"])
                    for i in a["state"]))


def test_fork_adds_ema_to_a_node_without_it(write_config, tmp_path):
    cfg = write_config(num_epochs=2)
    assert train(cfg) == 0
    node = tmp_path / "Results" / "tiny"
    assert set(parts(node, 2)) == SINGLE_PARTS  # a single network's checkpoint, as before
    ema = cfg.with_name("ema.toml")
    ema.write_text(cfg.read_text().replace("num_epochs = 2", f"num_epochs = 3\n{EMA}"))
    assert train(ema, "--continue_from_epoch", "2", "--new_branch", "--new_branch_name",
                 "ema") == 0
    assert "ema" in parts(node / "ema", 3)


def test_validate_ema_needs_ema_decay(write_config):
    with pytest.raises(ConfigError) as info:
        prepare(load_config(write_config(extra_training='validate_ema = "both"')))
    assert "training.validate_ema" in str(info.value)


def test_ema_copies_until_its_start_step_then_averages():
    from rumpy.training.ema import EMA
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.5, start_step=1)
    with torch.no_grad():
        net.weight.fill_(2.0)
    ema.update(net, 1)  # up to the start step: a copy
    assert torch.equal(ema.model.weight, net.weight)
    with torch.no_grad():
        net.weight.fill_(4.0)
    ema.update(net, 2)  # then 0.5 * 2 + 0.5 * 4
    assert torch.allclose(ema.model.weight, torch.full_like(net.weight, 3.0))
    assert not ema.model.weight.requires_grad


def test_an_average_longer_than_the_run_is_warned_about(write_config, caplog):
    """0.999 over a short run validates and saves nearly the initial weights: one warning says so
    and what to change; a decay the run can average over says nothing."""
    from rumpy.training.ema import warn_short_average
    cfg = load_config(write_config(num_epochs=3, extra_training="ema_decay = 0.999"))
    with caplog.at_level("WARNING", logger="rumpy.training.ema"):
        warn_short_average(cfg.training, steps_per_epoch=50)
        assert "averages over ~1000 optimizer steps, but this run makes 150" in caplog.text
        assert "mostly the initial weights; lower training.ema_decay" in caplog.text
        caplog.clear()
        cfg.training.ema_decay = 0.99
        warn_short_average(cfg.training, steps_per_epoch=50)
        assert caplog.text == ""
