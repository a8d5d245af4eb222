"""Bad input found by the adversarial campaign, each through the real command or function on real
tiny data: one line naming the file, the key and what was expected, exit code 2, no traceback,
and nothing written (no run folder, no eval folder, nothing removed)."""
from __future__ import annotations

import csv
import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest
from inference_nodes import regression_node, sr_nodes

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.data.images import write_png
from rumpy.cli.evaluate import eval_sisr_main
from rumpy.training.setup import prepare


def _files(folder: Path) -> dict[str, int]:
    """Every path under `folder` with its size (folders: -1)."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1)
            for p in sorted(folder.rglob("*"))}


def _one_error(caplog, code: int) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 2 and len(errors) == 1, (code, errors)
    assert "\n" not in errors[0] and "Traceback" not in errors[0] and "[Errno" not in errors[0]
    return errors[0]


def _train_refused(caplog, tmp_path: Path, *argv: str) -> str:
    """train_sisr refuses: one error line, exit code 2, nothing under tmp_path changed."""
    before = _files(tmp_path)
    caplog.clear()
    message = _one_error(caplog, train_main(list(argv)))
    assert _files(tmp_path) == before
    return message


def _refused(path: Path, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path, overrides))
    assert "\n" not in str(info.value)
    return str(info.value)


# -- 1. names and locations -----------------------------------------------------------------------
def test_names_and_locations_that_cannot_be_folders(write_config, tmp_path, caplog):
    path = write_config(num_epochs=2)
    for name in ("x" * 256, "two\nlines", "red\x1b[31malert", "tab\tname"):
        message = _train_refused(caplog, tmp_path, "--parameters", str(path),
                                 "--experiment_name", name)
        # a flag's value: the error names the flag that set it
        assert "--experiment_name: experiment: expected a name" in message
    text = path.read_text()
    empty = write_config(name="empty.toml", text=text.replace(
        f'experiment_save_loc = "{tmp_path / "Results"}"', 'experiment_save_loc = ""'))
    assert "experiment_save_loc: expected a folder, got ''" in _train_refused(
        caplog, tmp_path, "--parameters", str(empty))
    if Path("/proc/self").is_dir():  # root may write anywhere but under /proc
        assert "experiment_save_loc: cannot write in /proc" in _train_refused(
            caplog, tmp_path, "--parameters", str(path), "--save_loc", "/proc/rumpy_results")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    under = write_config(name="under.toml", text=text.replace(
        'cache = "memory"', 'cache = "disk"').replace(str(tmp_path / "cache"), str(afile / "c")))
    assert f"data.cache_dir: {afile} is a file, so {afile / 'c'} cannot be a folder" in \
        _train_refused(caplog, tmp_path, "--parameters", str(under))
    assert afile.read_text() == "mine"
    # branch names: the run exists, a fork with a bad name changes nothing
    assert train_main(["--parameters", str(path), "--num_epochs", "1"]) == 0
    for name in ("b" * 256, "new\nline", "\x1b[2Jclear", "..", "saved_models"):
        message = _train_refused(caplog, tmp_path, "--parameters", str(path),
                                 "--continue_from_epoch", "1", "--new_branch",
                                 "--new_branch_name", name)
        assert "training.new_branch_name: " in message
    message = _train_refused(caplog, tmp_path, "--parameters", str(path), "--continue_from_epoch",
                             "1", "--branch_root", "a\nb")
    assert "training.branch_root: " in message and "control characters" in message


# -- 2. component parameters torch does not check ---------------------------------------------------
SCHED = "model.internal_params.scheduler_params."


@pytest.mark.parametrize("params, expected", [
    ('scheduler = "cosine"\nscheduler_params = {T_max = -1}',
     SCHED + "T_max: expected an integer >= 1, got -1"),
    ('scheduler = "cosine"\nscheduler_params = {T_max = 0}', SCHED + "T_max: expected an integer"),
    ('scheduler = "step_lr"\nscheduler_params = {step_size = 0}',
     SCHED + "step_size: expected an integer >= 1, got 0"),
    ('scheduler = "step_lr"\nscheduler_params = {step_size = 1.5}',
     SCHED + "step_size: expected an integer >= 1, got 1.5"),
    ('scheduler = "multi_step_lr"\nscheduler_params = {milestones = []}',
     SCHED + "milestones: expected a non-empty list of integers >= 1, strictly increasing"),
    ('scheduler = "multi_step_lr"\nscheduler_params = {milestones = [3, 2]}',
     SCHED + "milestones: expected a non-empty list"),
    ('scheduler = "multi_step_lr"\nscheduler_params = {milestones = [1.5]}',
     SCHED + "milestones: expected a non-empty list"),
    ('scheduler = "reduce_on_plateau"\nscheduler_params = {patience = -1}',
     SCHED + "patience: expected an integer >= 0"),
    ('scheduler = "reduce_on_plateau"\nscheduler_params = {min_lr = -1e-3}',
     SCHED + "min_lr: expected a number >= 0"),
    ('scheduler = "reduce_on_plateau"\nscheduler_params = {factor = 0}',
     SCHED + "factor: expected a number in (0, 1), got 0"),
    ('scheduler = "reduce_on_plateau"\nscheduler_params = {factor = 1.5}',
     SCHED + "factor: expected a number in (0, 1)"),
    ('scheduler = "reduce_on_plateau"\nscheduler_params = {mode = "up"}',
     SCHED + "mode: 'up' is refused: ValueError"),  # torch's own check, at the right key
    ('scheduler = "one_cycle_lr"\nscheduler_params = {anneal_strategy = "square"}',
     SCHED + "anneal_strategy: 'square' is refused"),
    ('optimizer = "rmsprop"\noptimizer_params = {alpha = 1.5}',
     "model.internal_params.optimizer_params.alpha: expected a number in [0, 1), got 1.5"),
    ('optimizer = "rmsprop"\noptimizer_params = {alpha = 1.0}', "optimizer_params.alpha: expected"),
    ('optimizer = "adam"\noptimizer_params = {betas = [0.9, 1.0]}',
     "optimizer_params.betas: expected a list of 2 numbers in [0, 1)"),
    ('loss = {charbonnier = {eps = 0.0}}',
     "model.internal_params.loss.charbonnier.eps: expected a number > 0, got 0.0"),
    ('loss = {huber = {delta = inf}}', "loss.huber.delta: expected a number > 0, got inf"),
    ('loss = {huber = {delta = 0}}', "loss.huber.delta: expected a number > 0"),
    ("num_features = 8\nnum_blocks = -1",
     "model.internal_params.num_blocks: expected an integer >= 0 for edsr, got -1"),
    ("num_features = 0\nnum_blocks = 1", "model.internal_params.num_features: expected an "
                                         "integer >= 1"),
])
def test_component_ranges_are_refused_at_their_key(write_config, tmp_path, params, expected):
    arch = "" if params.startswith("num_") else "num_features = 8\nnum_blocks = 1\n"
    path = write_config(params=arch + params)
    message = _refused(path)
    assert expected in message, message
    assert not (tmp_path / "Results").exists()


def test_architecture_sizes_of_every_model(write_config, tmp_path, caplog):
    for model, params, expected in (
            ("rcan", "num_features = 8\nreduction = 16\nnum_groups = 1\nnum_blocks = 1",
             "reduction: expected an integer >= 1 and <= num_features (8) for rcan, got 16"),
            ("rcan", "num_groups = -2", "num_groups: expected an integer >= 0"),
            ("vdsr", "num_layers = 1", "num_layers: expected an integer >= 2"),
            ("srcnn", "kernel_sizes = [9, 4, 5]", "kernel_sizes: expected a list of 3 odd "
                                                  "integers >= 1"),
            ("safmn", "dim = -4", "dim: expected a multiple of 4 >= 4"),
            ("safmn", "dim = 6", "dim: expected a multiple of 4 >= 4 for safmn, got 6")):
        path = write_config(name=f"{model}.toml", model=model, params=params)
        assert f"model.internal_params.{expected}" in _refused(path)
    # and through the real command: RMSprop's alpha used to pass the dry run, then diverge
    path = write_config(name="cli.toml", extra_params='optimizer = "rmsprop"\n'
                                                     'optimizer_params = {alpha = 2.0}')
    assert "optimizer_params.alpha: expected a number in [0, 1), got 2.0" in _train_refused(
        caplog, tmp_path, "--parameters", str(path))
    assert not (tmp_path / "Results").exists()


# -- 4. fork-only keys without a fork ----------------------------------------------------------------
def test_fork_only_keys_without_a_fork_are_refused(write_config, tmp_path, caplog):
    path = write_config(num_epochs=1)
    for flags, expected in (
            (("--new_branch_name", "b"), "training.new_branch_name: only applies with new_branch"),
            (("--skip_optimizer_load",), "training.skip_optimizer_load: only applies with "
                                         "new_branch"),
            (("--skip_scheduler_load",), "training.skip_scheduler_load: only applies"),
            (("--new_branch",), "training.new_branch: only applies with continue_from_epoch"),
            (("--branch_root", "b"), "training.branch_root: only applies with continue_from_epoch")):
        assert expected in _train_refused(caplog, tmp_path, "--parameters", str(path), *flags)
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    # an in-place continue would have ignored them: the user surely meant a fork
    message = _train_refused(caplog, tmp_path, "--parameters", str(path), "--continue_from_epoch",
                             "1", "--num_epochs", "2", "--new_branch_name", "b")
    assert "training.new_branch_name: only applies with new_branch" in message
    assert len(list((node / "saved_models").glob("epoch_*.pt"))) == 1


# -- 5, 6. sizes: eval crops the metrics cannot score, batches larger than the set --------------------
def test_eval_crop_too_small_for_the_metrics(write_config, tmp_path):
    text = write_config().read_text()
    small = text.replace("[data.eval_sets.chelsea]", "[data.eval_sets.chelsea]\ncrop = 2")
    message = _refused(write_config(name="small.toml", text=small))
    assert "data.eval_sets.chelsea.crop: expected at least 8 (x2: SSIM needs 15 HR pixels, 11 " \
           "after the 2-pixel border crop), got 2" in message
    psnr = small.replace('metrics = ["PSNR", "SSIM"]', 'metrics = ["PSNR"]')
    assert "crop: expected at least 3 (x2: PSNR needs 5 HR pixels" in _refused(
        write_config(name="psnr.toml", text=psnr))
    assert not (tmp_path / "Results").exists()
    fits = text.replace("[data.eval_sets.chelsea]", "[data.eval_sets.chelsea]\ncrop = 8")
    prepare(load_config(write_config(name="fits.toml", text=fits)))


def test_batch_size_larger_than_the_training_set_is_refused(write_config, tmp_path, caplog):
    path = write_config(extra_data="", num_epochs=1)
    big = write_config(name="big.toml", text=path.read_text().replace("batch_size = 4",
                                                                      "batch_size = 64"))
    message = _train_refused(caplog, tmp_path, "--parameters", str(big))
    assert f"{big}: data.batch_size: 64 > 8 training samples per epoch in data.training_sets " \
           f"(tiles: 8, repeats included)" in message
    repeated = write_config(name="rep.toml", text=big.read_text().replace(
        "crop = 12", "crop = 12\nrepeat = 10"))
    assert len(prepare(load_config(repeated)).loaders.train) == 1  # 80 samples: one whole batch
    three = write_config(name="three.toml", text=path.read_text().replace("batch_size = 4",
                                                                          "batch_size = 3"))
    assert len(prepare(load_config(three)).loaders.train) == 2  # 8 = 3 + 3 + (2 dropped)


# -- 7, 8. regression sets ------------------------------------------------------------------------
def _regression_toml(tmp_path: Path, train: str, valid: str, name: str = "reg.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""\
        experiment = "reg"
        experiment_save_loc = "{tmp_path / 'Results'}"
        task = "regression"

        [training]
        num_epochs = 1
        gpu = "off"
        aim_track = false

        [model]
        name = "mlp"

        [model.internal_params]
        hidden_sizes = [4]

        [data]
        batch_size = 1
        dataloader_threads = 0
        cache_dir = "{tmp_path / 'cache'}"

        [data.training_sets.t]
        """) + train + "\n\n[data.eval_sets.v]\n" + valid + "\n")
    return path


def _csv(path: Path, n: int) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x0", "x1", "y"])
        writer.writerows([[i, i * i % 5, 2 * i] for i in range(n)])
    return path


def test_degenerate_regression_sets_are_refused(tmp_path, caplog):
    cols = 'input_columns = ["x0", "x1"]\ntarget_columns = ["y"]'
    many, one = _csv(tmp_path / "many.csv", 6), _csv(tmp_path / "one.csv", 1)
    good = f'file = "{many}"\n{cols}'
    path = _regression_toml(tmp_path, f'file = "{one}"\n{cols}', good)
    assert "data.training_sets: 1 training sample; expected at least 2" in _train_refused(
        caplog, tmp_path, "--parameters", str(path))
    path = _regression_toml(tmp_path, good, f'file = "{one}"\n{cols}', "one_eval.toml")
    assert "data.eval_sets.v: 1 sample; R2 needs at least 2" in _train_refused(
        caplog, tmp_path, "--parameters", str(path))
    dup = 'input_columns = ["x0", "x0"]\ntarget_columns = ["y"]'
    path = _regression_toml(tmp_path, f'file = "{many}"\n{dup}', good, "dup.toml")
    assert "data.training_sets.t.input_columns: lists 'x0' twice" in _train_refused(
        caplog, tmp_path, "--parameters", str(path))
    npz = tmp_path / "two.npz"
    np.savez(npz, inputs=np.arange(12, dtype=np.float32).reshape(6, 2),
             targets=np.arange(12, dtype=np.float64).reshape(6, 2) ** 2)
    names = f'file = "{npz}"\ntarget_names = ["a", "a"]'
    path = _regression_toml(tmp_path, names, f'file = "{npz}"\ntarget_names = ["a", "b"]',
                            "names.toml")
    assert "data.training_sets.t.target_names: lists 'a' twice" in _train_refused(
        caplog, tmp_path, "--parameters", str(path))


def test_images_with_targets_rows_stay_inside_the_images_folder(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        write_png(images / f"{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    outside = tmp_path / "secret.png"
    write_png(outside, rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    for bad in ("../secret.png", str(outside), "sub/../../secret.png"):
        table = tmp_path / "targets.csv"
        table.write_text("image,y\n0.png,1\n" + f"{bad},2\n" + "1.png,3\n2.png,4\n")
        spec = (f'type = "images_with_targets"\nimages = "{images}"\ntargets = "{table}"')
        path = _regression_toml(tmp_path, spec, spec)
        message = _train_refused(caplog, tmp_path, "--parameters", str(path))
        assert f"data.training_sets.t.targets: {table} row 3: image {bad!r} is outside the " \
               f"images folder {images}" in message


# -- 3, 9. rumpy eval and export-model -----------------------------------------------------------
def test_eval_refusals_write_nothing(tmp_path_factory, caplog, capsys):
    sr, reg = sr_nodes(tmp_path_factory), regression_node(tmp_path_factory)
    for node, flags, expected in (
            (reg["root"], ["--tile", "8"], "for image outputs"),
            (reg["root"], ["--self-ensemble"], "for image outputs"),
            (sr["root"], ["--data", str(sr["root"])], "is a folder; expected a TOML file")):
        before = _files(node)
        caplog.clear()
        assert expected in _one_error(caplog, rumpy_main(["eval", str(node), *flags]))
        assert _files(node) == before  # no eval/epoch_N_tile8 folder
    before = _files(sr["root"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        rumpy_main(["eval", str(sr["root"]), "--tile", "8", "--tile-overlap", "-1"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("rumpy eval: error: argument --tile-overlap: expected an integer >= 0, got "
                   "'-1' (see rumpy eval --help)")
    from rumpy.inference.evaluate import evaluate_node
    from rumpy.inference.load import InferenceError
    with pytest.raises(InferenceError, match="overlap >= 0"):
        evaluate_node(sr["root"], tile=8, tile_overlap=-1)
    assert _files(sr["root"]) == before


def test_export_model_errors_name_what_is_wrong(tmp_path_factory, tmp_path, caplog):
    sr = sr_nodes(tmp_path_factory)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    before = _files(sr["root"])
    for out, expected in ((afile, f"-o: {afile} is a file, not a folder"),
                          (afile / "sub", f"-o: {afile} is a file, so {afile / 'sub'} cannot be")):
        caplog.clear()
        assert expected in _one_error(caplog, rumpy_main(["export-model", str(sr["root"]),
                                                          "-o", str(out)]))
    if Path("/proc/self").is_dir():
        caplog.clear()
        assert "-o: cannot write in /proc" in _one_error(
            caplog, rumpy_main(["export-model", str(sr["root"]), "-o", "/proc/rumpy_export"]))
    assert afile.read_text() == "mine" and _files(sr["root"]) == before


# -- 10, 11. command lines --------------------------------------------------------------------------
@pytest.mark.parametrize("main, argv, expected", [
    (train_main, ["--parameters", "x.toml", "--continue_from_epoch", "١"],
     "train_sisr: error: argument --continue_from_epoch: expected an epoch number >= 1, 'best' "
     "or 'last', got '١' (see train_sisr --help)"),
    (train_main, ["--parameters", "x.toml", "--seed", "５"],
     "train_sisr: error: argument --seed: expected an integer, got '５'"),
    (train_main, ["--parameters", "x.toml", "--gpu", "singel"],
     "argument --gpu: invalid choice: 'singel' (choose from 'off', 'single', 'multiple'); did you "
     "mean 'single'? (see train_sisr --help)"),
    (train_main, [], "train_sisr: error: the following arguments are required: --parameters"),
    (rumpy_main, ["train", "--num_epochs", "٣", "--parameters", "x.toml"],
     "rumpy train: error: argument --num_epochs: expected an integer, got '٣'"),
    (rumpy_main, ["evl"], "rumpy: error: argument command: invalid choice: 'evl'"),
    (rumpy_main, ["eval", "node", "--epoch", "٢"], "rumpy eval: error: argument --epoch: expected "
                                                   "an epoch number >= 1"),
    (rumpy_main, ["export-model", "node", "--format", "onx"], "did you mean 'onnx'?"),
    (rumpy_main, ["export", "f", "--per-image", "0"], "rumpy export: error: argument --per-image"),
    (eval_sisr_main, [], "eval_sisr: error: the following arguments are required: node (see "
                         "eval_sisr --help)"),
])
def test_command_line_errors_are_one_line(main, argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and "usage:" not in err and expected in err, err
