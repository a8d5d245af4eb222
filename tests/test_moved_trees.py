"""A result tree copied or moved to another folder (or machine) is continued where it is now:
its nodes' own config.toml files place the run in the tree they lie in, never in the tree they
were made in (issue: a copy continued through its config.toml trained the original)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import no_timing, rows, same_weights, weights

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its content's hash (a write anywhere shows)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_copied_tree_continues_in_the_copy_and_leaves_the_original_alone(write_config,
                                                                         tmp_path):
    cfg = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(cfg)]) == 0
    root = tmp_path / "Results" / "tiny"
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "1", "--new_branch",
                       "--new_branch_name", "half", "model.internal_params.lr=5e-4"]) == 0
    original = snapshot(tmp_path / "Results")

    copy = tmp_path / "elsewhere" / "Results"
    shutil.copytree(tmp_path / "Results", copy, symlinks=True)
    moved = copy / "tiny"
    # the root, through its own config.toml, one more epoch
    assert train_main(["--parameters", str(moved / "config.toml"), "--continue_from_epoch",
                       "last", "--num_epochs", "3"]) == 0
    # the branch, through its config.toml: it continues the branch, not the root
    assert train_main(["--parameters", str(moved / "half" / "config.toml"),
                       "--continue_from_epoch", "last", "--num_epochs", "3"]) == 0
    assert snapshot(tmp_path / "Results") == original  # not one byte of the original changed
    assert [int(r["epoch"]) for r in rows(moved)] == [1, 2, 3]
    assert [int(r["epoch"]) for r in rows(moved / "half")] == [1, 2, 3]
    assert (moved / "saved_models" / "epoch_3.pt").is_file()
    assert (moved / "half" / "saved_models" / "epoch_3.pt").is_file()

    # the same continue on the original gives the same numbers: a copy is the same tree
    assert train_main(["--parameters", str(root / "config.toml"), "--continue_from_epoch",
                       "last", "--num_epochs", "3"]) == 0
    assert no_timing(rows(moved)) == no_timing(rows(root))
    assert same_weights(weights(moved, 3), weights(root, 3))


def test_a_renamed_run_folder_continues_under_its_new_name(write_config, tmp_path):
    cfg = write_config(num_epochs=1, extra_training='logging = "text"')
    assert train_main(["--parameters", str(cfg)]) == 0
    old = tmp_path / "Results" / "tiny"
    new = tmp_path / "Results" / "tiny_renamed"
    old.rename(new)
    assert train_main(["--parameters", str(new / "config.toml"), "--continue_from_epoch", "last",
                       "--num_epochs", "2"]) == 0
    assert not old.exists()
    assert [int(r["epoch"]) for r in rows(new)] == [1, 2]
    assert 'experiment = "tiny_renamed"' in (new / "config.toml").read_text()


def _trained(write_config, tmp_path) -> tuple[Path, Path]:
    cfg = write_config(num_epochs=2, extra_training='logging = "text"\nkeep_every_n_epochs = 0\n'
                                                  'keep_last_n = 5')
    assert train_main(["--parameters", str(cfg)]) == 0
    return cfg, tmp_path / "Results" / "tiny"


@pytest.mark.slow
def test_no_write_or_removal_follows_a_symbolic_link_out_of_the_tree(write_config, tmp_path,
                                                                     caplog):
    cfg, node = _trained(write_config, tmp_path)
    outside = tmp_path / "outside"
    for name in ("saved_models", "result_outputs"):
        # the folder moved out of the tree, a link left in its place
        shutil.move(node / name, outside / name)
        (node / name).symlink_to(outside / name, target_is_directory=True)
        before = snapshot(outside)
        caplog.clear()
        assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "last",
                           "--num_epochs", "3"]) == 2
        assert f"{node / name} is a symbolic link" in caplog.text
        for command in (["clean", str(node), "--keep-every", "0", "--keep-last", "0"],
                        ["eval", str(node), "--epoch", "last"]):
            caplog.clear()
            assert rumpy_main(command) == 2
            assert f"{node / name} is a symbolic link" in caplog.text, command
        assert snapshot(outside) == before  # nothing written or removed there
        (node / name).unlink()
        shutil.move(outside / name, node / name)
    # the run folder itself a link: cleaning or continuing through it is refused
    link = tmp_path / "Results" / "link"
    link.symlink_to(node, target_is_directory=True)
    before = snapshot(node)
    caplog.clear()
    assert rumpy_main(["clean", str(link), "--keep-every", "0", "--keep-last", "0"]) == 2
    assert f"{link} is a symbolic link" in caplog.text
    assert train_main(["--parameters", str(link / "config.toml"), "--continue_from_epoch",
                       "last", "--num_epochs", "3"]) == 2
    assert snapshot(node) == before
    # with the links gone the same commands work
    link.unlink()
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "last",
                       "--num_epochs", "3"]) == 0


def test_a_run_inside_a_run_is_refused_before_anything_is_written(write_config, tmp_path,
                                                                  caplog):
    cfg, node = _trained(write_config, tmp_path)
    before = snapshot(node)
    for flags in (["--experiment_name", "tiny/sub"],
                  ["--save_loc", str(node / "result_outputs"), "--experiment_name", "x"]):
        caplog.clear()
        assert train_main(["--parameters", str(cfg), *flags]) == 2
        assert f"would be inside the run folder {node}" in caplog.text
        assert snapshot(node) == before
    # the run itself still continues and cleans
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "last",
                       "--num_epochs", "3"]) == 0
    assert rumpy_main(["clean", str(node), "--keep-every", "0", "--keep-last", "1"]) == 0
