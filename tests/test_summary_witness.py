"""Readers of a damaged summary.csv / lineage.json (issue 24, item 4): every epoch checkpoint
carries its summary row and a branch's its lineage, so `rumpy tree`, `rumpy export`, the report,
the best epoch and continue planning notice a deleted, edited or duplicated row, a branch whose
config.toml is gone and an edited fork epoch, say so in one line naming the file, show the
checkpoints' values, and the next continue repairs the file. One real tree (a root of 3 epochs
and a branch forked at 2) is trained once per module and copied for each damage."""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import no_timing, rows, tiny_toml

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main

pytestmark = pytest.mark.slow  # a tree of two runs, then a continue per test


@pytest.fixture(scope="module")
def pristine(tiny_sets, tmp_path_factory) -> Path:
    """Results/tiny: epochs 1-3 and branch `b` forked at 2, trained to 4 (every epoch kept)."""
    base = tmp_path_factory.mktemp("witness")
    path = base / "cfg.toml"
    path.write_text(tiny_toml(tiny_sets, base / "Results", base / "cache", num_epochs=3,
                              extra_training='logging = "text"'))
    assert train_main(["--parameters", str(path)]) == 0
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "2", "--new_branch",
                       "--new_branch_name", "b", "--num_epochs", "4"]) == 0
    return base


@pytest.fixture
def tree(pristine, tmp_path) -> tuple[Path, Path]:
    """(config path, a fresh copy of the trained tree's root node). The config names the
    original's absolute save location, so it is rewritten for the copy."""
    shutil.copytree(pristine / "Results", tmp_path / "Results")
    text = (pristine / "cfg.toml").read_text().replace(str(pristine / "Results"),
                                                        str(tmp_path / "Results"))
    (tmp_path / "cfg.toml").write_text(text)
    return tmp_path / "cfg.toml", tmp_path / "Results" / "tiny"


def _tree(node: Path, capsys) -> str:
    capsys.readouterr()
    assert rumpy_main(["tree", str(node)]) == 0
    return capsys.readouterr().out


def _export(node: Path, tmp_path: Path) -> list[dict]:
    out = tmp_path / "export.csv"
    assert rumpy_main(["export", str(node), "-o", str(out)]) == 0
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_rows(node: Path, table: list[dict]) -> None:
    with open(node / "result_outputs" / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_deleted_summary_is_read_from_the_checkpoints_and_rewritten_by_a_continue(
        tree, tmp_path, capsys, caplog):
    path, node = tree
    before = rows(node)
    (node / "result_outputs" / "summary.csv").unlink()
    shown = _tree(node, capsys)
    assert "tiny  [finished]  epochs 1-3  best val-PSNR" in shown, shown
    assert any("summary.csv is missing; 3 row(s) rebuilt from their checkpoints" in w
               for w in _warnings(caplog))
    exported = [r for r in _export(node, tmp_path) if r["branch"] == "."]
    assert [int(r["epoch"]) for r in exported] == [1, 2, 3]
    assert [float(r["val-PSNR"]) for r in exported] == [float(r["val-PSNR"]) for r in before]
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "4"]) == 0
    assert no_timing(rows(node))[:3] == no_timing(before)
    assert rows(node)[:3] == before  # the timing columns too: the checkpoints carry them


def test_an_edited_value_is_not_the_best_and_a_continue_repairs_it(tree, tmp_path, capsys,
                                                                   caplog):
    path, node = tree
    before = rows(node)
    true_best = max(before, key=lambda r: float(r["val-PSNR"]))
    edited = [dict(r) for r in before]
    worst = min(edited, key=lambda r: float(r["val-PSNR"]))
    worst["val-PSNR"] = "99.0"
    _write_rows(node, edited)
    shown = _tree(node, capsys).splitlines()[0]
    assert f"@ {true_best['epoch']}" in shown and "99" not in shown, shown
    warning = [w for w in _warnings(caplog) if "disagrees with the checkpoints" in w]
    assert warning and "summary.csv" in warning[0] and "val-PSNR 99.0 vs" in warning[0]
    exported = {r["epoch"]: r for r in _export(node, tmp_path) if r["branch"] == "."}
    assert exported[worst["epoch"]]["val-PSNR"] != "99.0"
    from rumpy.tree.node import Node
    from rumpy.tree.plan import best_saved_epoch
    assert best_saved_epoch(Node(node, ""), "val-PSNR")[0] == int(true_best["epoch"])
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "4"]) == 0
    assert rows(node)[:3] == before
    status = json.loads((node / "status.json").read_text())
    assert status["best"]["value"] != 99.0


def test_a_duplicated_row_is_exported_once(tree, tmp_path, caplog):
    path, node = tree
    before = rows(node)
    _write_rows(node, before[:2] + [before[1]] + before[2:])
    exported = [r for r in _export(node, tmp_path) if r["branch"] == "."]
    assert [int(r["epoch"]) for r in exported] == [1, 2, 3]
    assert any("holds epoch(s) 2 more than once" in w for w in _warnings(caplog))
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "4"]) == 0
    assert [r["epoch"] for r in rows(node)] == ["1", "2", "3", "4"]


def test_a_branch_without_its_config_stays_in_tree_and_export(tree, tmp_path, capsys, caplog):
    path, node = tree
    (node / "b" / "config.toml").unlink()
    shown = _tree(node, capsys)
    assert "└── b  [finished]  fork @ 2  epochs 3-4" in shown, shown
    assert "config.toml missing" in shown
    assert any("b/config.toml is missing" in w for w in _warnings(caplog))
    exported = [r for r in _export(node, tmp_path) if r["branch"] == "b"]
    assert [int(r["epoch"]) for r in exported] == [1, 2, 3, 4]
    # and its fork point is still protected: retention keeps epoch 2 of the root
    assert rumpy_main(["clean", str(node), "--keep-last", "1", "--keep-every", "0"]) == 0
    assert (node / "saved_models" / "epoch_2.pt").is_file()


def test_an_edited_fork_epoch_is_refused_by_its_witnesses(tree, tmp_path, capsys, caplog):
    path, node = tree
    lineage_file = node / "b" / "lineage.json"
    lineage = json.loads(lineage_file.read_text())
    assert lineage["fork_epoch"] == 2
    lineage["fork_epoch"] = 1
    lineage_file.write_text(json.dumps(lineage))
    shown = _tree(node, capsys)
    assert "└── b  [finished]  fork @ 2  epochs 3-4" in shown, shown
    warning = [w for w in _warnings(caplog) if "says fork_epoch 1" in w]
    assert warning and "lineage.json" in warning[0]
    exported = [r for r in _export(node, tmp_path) if r["branch"] == "b"]
    assert {r["fork_epoch"] for r in exported} == {"2"}
    assert train_main(["--parameters", str(path), "--branch_root", "b", "--continue_from_epoch",
                       "last", "--num_epochs", "5"]) == 0
    assert json.loads(lineage_file.read_text())["fork_epoch"] == 2
