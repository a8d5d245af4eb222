"""`rumpy extract` (one epoch's model and config out of the tree, loadable as the node's epoch)
and `rumpy clean` (retention after the fact: never best, last, the pointer epochs or any fork
point, and the tree goes on working afterwards)."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from conftest import rows, same_weights, tiny_toml
from rumpy import load_experiment
from rumpy.cli.clean import _size
from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.inference.evaluate import evaluate_node
from rumpy.core.checkpoint import load_checkpoint
from rumpy.tree.lock import NodeLock


def train(path: Path, *flags: str) -> None:
    assert train_main(["--parameters", str(path), *flags]) == 0


def epochs(node: Path, prefix: str = "epoch") -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (node / "saved_models").glob(f"{prefix}_*.pt"))


def build_tree(sets, folder: Path) -> Path:
    """A 6-epoch root keeping every checkpoint, branch b forked at 3 (epochs 4-5), and bb forked
    from b at epoch 2, which b inherited: the checkpoint of both fork points lives in the root."""
    path = folder / "cfg.toml"
    path.write_text(tiny_toml(sets, folder / "Results", folder / "cache", num_epochs=6,
                              extra_training='logging = "text"\nkeep_every_n_epochs = 1'))
    train(path)
    train(path, "--continue_from_epoch", "3", "--new_branch", "--new_branch_name", "b",
          "--num_epochs", "5")
    train(path, "--branch_root", "b", "--continue_from_epoch", "2", "--new_branch",
          "--new_branch_name", "bb", "--num_epochs", "3")
    return path


@pytest.fixture(scope="module")
def tree(tiny_sets, tmp_path_factory) -> Path:
    """Read-only for the extract tests (they write outside it)."""
    folder = tmp_path_factory.mktemp("extract")
    build_tree(tiny_sets, folder)
    return folder / "Results" / "tiny"


def same_model(a, b) -> bool:
    return same_weights(a.state_dict(), b.state_dict())


def test_extract_best_is_loaded_and_evaluated_as_the_nodes_best(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert rumpy_main(["extract", str(tree)]) == 0
    original = load_experiment(tree, epoch="best")
    best = original.rumpy.epoch
    out = tmp_path / f"tiny_epoch_{best}"  # the default name: node and epoch, here
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "config.toml", "result_outputs", "result_outputs/summary.csv", "saved_models",
        f"saved_models/epoch_{best}.pt", f"saved_models/epoch_{best}.pt.sha256", "status.json"]
    assert (out / "config.toml").read_bytes() == (tree / "config.toml").read_bytes()
    assert (out / "saved_models" / f"epoch_{best}.pt").read_bytes() == \
        (tree / "saved_models" / f"epoch_{best}.pt").read_bytes()
    for choice in ("best", "last", best):
        copy = load_experiment(out, epoch=choice)
        assert copy.rumpy.epoch == best and same_model(copy, original)
        assert copy.rumpy.summary_row == original.rumpy.summary_row
    # rumpy eval of the copy gives the node's summary.csv numbers for that epoch
    report = evaluate_node(out)
    row = next(r for r in rows(tree) if r["epoch"] == str(best))
    assert report.epoch == best
    assert report.sets[0].means["PSNR"] == pytest.approx(float(row["val-PSNR"]), abs=1e-9)
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "extracted" and status["epoch"] == best
    assert status["extracted_from"] == str(tree)
    assert rumpy_main(["export-model", str(out), "--format", "torchscript"]) == 0
    # a new run starts from the extracted weights
    path = tmp_path / "from_copy.toml"
    path.write_text((tree.parent.parent / "cfg.toml").read_text().replace(
        'experiment = "tiny"', 'experiment = "from_copy"').replace(
        "[training]", f'[training]\ninit_weights_path = "{out}"').replace(
        f'experiment_save_loc = "{tree.parent}"', f'experiment_save_loc = "{tmp_path}"'))
    train(path, "--num_epochs", "1")
    lineage = json.loads((tmp_path / "from_copy" / "lineage.json").read_text())
    assert lineage["init_weights"]["epoch"] == best


def test_extract_an_inherited_epoch_of_a_branch_of_a_branch(tree, tmp_path, caplog):
    bb = tree / "b" / "bb"
    assert not epochs(bb) or 2 not in epochs(bb)  # epoch 2 lives in the root
    out = tmp_path / "bb2"
    with caplog.at_level(logging.INFO, logger="rumpy"):
        assert rumpy_main(["extract", str(bb), "--epoch", "2", "-o", str(out)]) == 0
    assert f"extracted epoch 2 of {bb}" in caplog.text
    copy, original = load_experiment(out, epoch="best"), load_experiment(bb, epoch=2)
    assert copy.rumpy.epoch == 2 and same_model(copy, original)
    assert (out / "config.toml").read_bytes() == (bb / "config.toml").read_bytes()
    summary = rows(out)
    assert len(summary) == 1 and summary[0]["inherited"] == "0"
    assert summary[0]["val-PSNR"] == next(r for r in rows(tree) if r["epoch"] == "2")["val-PSNR"]
    # best of the branch, wherever it lives, and the default name says which node it is
    best = load_experiment(bb, epoch="best")
    assert rumpy_main(["extract", str(bb), "-o", str(tmp_path / "bb_best")]) == 0
    assert same_model(load_experiment(tmp_path / "bb_best"), best)
    # weights only: a smaller file, the same model
    assert rumpy_main(["extract", str(tree), "--epoch", "4", "--weights-only", "-o",
                       str(tmp_path / "w4")]) == 0
    small = tmp_path / "w4" / "saved_models" / "weights_4.pt"
    assert small.stat().st_size < 0.6 * (tree / "saved_models" / "epoch_4.pt").stat().st_size
    assert "optimizer" not in load_checkpoint(small)["parts"]
    assert same_model(load_experiment(tmp_path / "w4"), load_experiment(tree, epoch=4))
    assert rumpy_main(["tree", str(tmp_path / "w4")]) == 0


def test_extract_refuses_to_write_over_anything(tree, tmp_path, caplog):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    afile = tmp_path / "a_file"
    afile.write_text("mine")
    cases = [(["-o", str(full)], "is a folder that is not empty"),
             (["-o", str(afile)], "exists and is not a folder"),
             (["-o", str(tree / "b" / "copy")], "is inside the run folder"),
             (["--epoch", "99"], "has no checkpoint of epoch 99 (saved epochs: 1, 2, 3, 4, 5, 6)")]
    for args, message in cases:
        caplog.clear()
        assert rumpy_main(["extract", str(tree), *args]) == 2
        assert message in caplog.text
        assert len(caplog.records) == 1  # one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "full"]  # no temp left
    assert [p.name for p in full.iterdir()] == ["notes.txt"] and afile.read_text() == "mine"
    assert not (tree / "b" / "copy").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert rumpy_main(["extract", str(tree), "--epoch", "last", "-o", str(empty)]) == 0
    assert load_experiment(empty).rumpy.epoch == 6


@pytest.mark.slow
def test_clean_keeps_best_last_and_fork_points_and_the_tree_goes_on(tiny_sets, tmp_path,
                                                                    caplog):
    path = build_tree(tiny_sets, tmp_path)
    root = tmp_path / "Results" / "tiny"
    lineage = json.loads((root / "b" / "lineage.json").read_text())
    best = json.loads((root / "status.json").read_text())["best"]["epoch"]
    assert epochs(root) == [1, 2, 3, 4, 5, 6]
    pointed = load_checkpoint(root / "saved_models" / "best.pt")["epoch"]  # best.pt's epoch
    protected = {2, 3, 6, best, pointed}  # fork points of b and (through b) bb, last, best
    doomed = sorted({1, 2, 3, 4, 5, 6} - protected)
    size = sum((root / "saved_models" / f"epoch_{e}.pt").stat().st_size +
               (root / "saved_models" / f"epoch_{e}.pt.sha256").stat().st_size for e in doomed)
    listed = ", ".join(map(str, doomed))
    with caplog.at_level(logging.INFO, logger="rumpy"):
        assert rumpy_main(["clean", str(root), "--keep-every", "0", "--keep-last", "0",
                           "--dry-run"]) == 0
        assert f"would remove the checkpoints of epochs {listed}" in caplog.text
        assert epochs(root) == [1, 2, 3, 4, 5, 6]
        # a node being trained is refused (its lock is held), and nothing goes
        lock = NodeLock(root)
        lock.acquire()
        try:
            caplog.clear()
            assert rumpy_main(["clean", str(root), "--keep-every", "0"]) == 2
            assert "is being trained by process" in caplog.text
        finally:
            lock.release()
        assert epochs(root) == [1, 2, 3, 4, 5, 6]
        caplog.clear()
        assert rumpy_main(["clean", str(root), "--keep-every", "0", "--keep-last", "0"]) == 0
    assert f"removed the checkpoints of epochs {listed}" in caplog.text
    assert f"freed {_size(size)}" in caplog.text and size > 0
    assert epochs(root) == sorted(protected)
    assert not any((root / "saved_models" / f"epoch_{e}.pt.sha256").exists() for e in doomed)
    assert all((root / "saved_models" / f"epoch_{e}.pt.sha256").is_file() for e in protected)
    # the fork's lineage checksum still verifies
    fork = root / lineage["fork_checkpoint"]
    assert hashlib.sha256(fork.read_bytes()).hexdigest() == lineage["fork_checkpoint_sha256"]
    load_checkpoint(fork)
    # again: nothing left to remove; the node's own policy (keep all) by default
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rumpy"):
        assert rumpy_main(["clean", str(root / "b"), "--keep-every", "0",
                           "--keep-last", "2"]) == 0
        assert rumpy_main(["clean", str(root)]) == 0
    assert caplog.text.count("nothing to remove") == 2
    # continue and fork still work, and the branches go on from the kept fork points
    train(path, "--continue_from_epoch", "last", "--num_epochs", "7")
    assert [r["epoch"] for r in rows(root)] == [str(e) for e in range(1, 8)]
    train(path, "--continue_from_epoch", "3", "--new_branch", "--new_branch_name", "c",
          "--num_epochs", "4")
    train(path, "--branch_root", "b/bb", "--continue_from_epoch", "last", "--num_epochs", "4")
    assert [r["epoch"] for r in rows(root / "b" / "bb")] == ["1", "2", "3", "4"]
    assert rumpy_main(["clean", str(root / "nowhere")]) == 2
