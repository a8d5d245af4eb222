"""Hardening, with real damage: divergence, bad values that used to pass or crash late, and
overwrite_data that may only ever remove a rumpy run (docs/result_tree.md, "Guarantees")."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import rows

from rumpy.cli.train import main as train_main
from rumpy.catalog import load_config
from rumpy.config import ConfigError
from rumpy.training.setup import prepare, start
from rumpy.training.trainer import train


def _status(node: Path) -> dict:
    return json.loads((node / "status.json").read_text())


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(write_config, tmp_path):
    path = write_config(num_epochs=4, extra_params="", params="num_features = 8\nnum_blocks = 1")
    path.write_text(path.read_text().replace("lr = 1e-3", "lr = 1e6"))
    assert train_main(["--parameters", str(path)]) == 3
    node = tmp_path / "Results" / "tiny"
    status = _status(node)
    assert status["state"] == "diverged"
    assert "training loss was not finite at epoch" in status["stop_reason"]
    diverged = int(status["stop_reason"].split("at epoch ")[1].split(",")[0])
    kept = sorted(int(p.stem.split("_")[1]) for p in (node / "saved_models").glob("epoch_*.pt"))
    assert kept == list(range(1, diverged))  # nothing of the diverged epoch
    assert [int(r["epoch"]) for r in rows(node)] == kept
    assert all(r["train-loss"] not in ("nan", "inf") for r in rows(node))


def test_non_finite_metrics_are_written_as_such_and_never_best(write_config, tmp_path):
    path = write_config(num_epochs=3, extra_training="stop_on_divergence = false")
    path.write_text(path.read_text().replace("lr = 1e-3", "lr = 1e6"))
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    summary = rows(node)
    assert any(r["val-PSNR"] == "nan" or r["train-loss"] in ("nan", "inf") for r in summary)
    best = _status(node)["best"]
    if best["epoch"] is not None:
        chosen = summary[best["epoch"] - 1]["val-PSNR"]
        assert chosen not in ("nan", "inf", "-inf")


@pytest.mark.parametrize("change, expected", [
    (("lr = 1e-3", "lr = inf"), "model.internal_params.lr: expected a finite number, got inf"),
    (("lr = 1e-3", "lr = 1e-3\ngrad_clip = nan"), "model.internal_params.grad_clip: expected a finite number"),
    (("seed = 3", "seed = 4294967296"), "training.seed: expected an integer <= 4.29497e+09"),
    (("seed = 3", "seed = 3\nearly_stopping_min_delta = nan"), "training.early_stopping_min_delta: expected a finite"),
    (("lr = 1e-3", 'lr = 1e-3\nscheduler = "multi_step_lr"\nscheduler_params = {milestones = ["a"]}'),
     "scheduler_params.milestones: expected a list of finite numbers, got ['a']"),
    (("lr = 1e-3", 'lr = 1e-3\noptimizer_params = {eps = inf}'),
     "optimizer_params.eps: expected a finite number, got inf"),
    (("lr = 1e-3", 'lr = 1e-3\nscheduler = "one_cycle_lr"\nscheduler_params = {total_steps = 2}'),
     "model.internal_params: cannot train edsr with these settings"),
    (("lr = 1e-3", 'lr = 1e-3\nscheduler = "step_lr"\nscheduler_params = {step_size = 0}'),
     "model.internal_params.scheduler_params.step_size: expected an integer >= 1, got 0"),
    (("num_features = 8", "num_features = 0"),
     "model.internal_params.num_features: expected an integer >= 1 for edsr, got 0"),
    (("num_features = 8", "num_features = -3"), "model.internal_params.num_features: expected"),
])
def test_bad_values_are_refused_before_anything_is_written(write_config, tmp_path, change, expected):
    path = write_config()
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path))
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "Results").exists()


def _refused(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_locations_and_names(write_config, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    text = write_config().read_text()
    results = str(tmp_path / "Results")
    for save_loc, expected in ((afile, "afile is a file, not a folder"),
                               (afile / "sub", "afile is a file, so")):
        path = write_config(name="loc.toml", text=text.replace(results, str(save_loc)))
        assert "experiment_save_loc: " + str(tmp_path) in _refused(path)
        assert expected in _refused(path)
    path = write_config(name="cache.toml", text=text.replace(str(tmp_path / "cache"), str(afile)))
    assert "data.cache_dir: " in _refused(path) and "is a file" in _refused(path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "Results").mkdir()
    (tmp_path / "Results" / "tiny").symlink_to(tmp_path / "elsewhere")
    assert "is a symbolic link" in _refused(write_config())
    assert not any((tmp_path / "elsewhere").iterdir())
    for name, expected in (("a\\u0000b", "expected a name without control characters"),
                           ("x" * 300, "at most 200 bytes")):
        path = write_config(name="name.toml", text=text.replace('experiment = "tiny"',
                                                                 f'experiment = "{name}"'))
        assert expected in _refused(path)
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("cache", ["memory", "disk", "off"])
def test_truncated_image_is_named_before_anything_is_written(write_config, tmp_path, tiny_sets, cache):
    import shutil
    hr = tmp_path / "HR"
    shutil.copytree(tiny_sets["train_hr"], hr)
    data = (hr / "0003.png").read_bytes()
    (hr / "0003.png").write_bytes(data[: len(data) // 2])
    text = write_config().read_text().replace(f'hr = "{tiny_sets["train_hr"]}"', f'hr = "{hr}"')
    text = text.replace('cache = "memory"', f'cache = "{cache}"')
    message = _refused(write_config(name="trunc.toml", text=text))
    assert message.endswith(f"data: cannot decode {hr / '0003.png'}: " + message.split(": ")[-1])
    assert not (tmp_path / "Results").exists()


@pytest.mark.slow
def test_overwrite_data_never_removes_what_rumpy_did_not_make(write_config, tmp_path):
    results = tmp_path / "Results"
    documents = results / "tiny"  # a user's folder that happens to have the run's name
    documents.mkdir(parents=True)
    (documents / "thesis.tex").write_text("years of work")
    path = write_config()
    assert train_main(["--parameters", str(path), "--overwrite_data"]) == 2
    assert (documents / "thesis.tex").read_text() == "years of work"
    # a real run with a file of the user's added inside is not removed either
    (documents / "thesis.tex").unlink()
    documents.rmdir()
    assert train_main(["--parameters", str(path)]) == 0
    (documents / "result_outputs" / "my_notes.txt").write_text("keep")
    message = _refused_overwrite(path)
    assert "result_outputs/my_notes.txt, which rumpy did not make" in message
    assert (documents / "result_outputs" / "my_notes.txt").read_text() == "keep"
    # --save_loc ~ style: the save location itself is never what is removed
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    assert train_main(["--parameters", str(path), "--save_loc", str(home), "--experiment_name",
                       "photos", "--overwrite_data"]) == 2
    assert (home / "photos" / "cat.jpg").read_bytes() == b"\xff\xd8 a cat"


def _refused_overwrite(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        prepare(load_config(path, {"overwrite_data": True}))
    assert "training.overwrite_data: refusing to remove" in str(info.value)
    return str(info.value)


@pytest.mark.slow
def test_overwrite_data_keeps_the_old_run_until_the_new_one_has_a_checkpoint(write_config, tmp_path):
    path = write_config(num_epochs=2)
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    old_rows = rows(node)
    # a replacement that passes every check and the dry run, then fails in epoch 1's validation
    new = write_config(name="new.toml", num_epochs=3)
    run = prepare(load_config(new, {"overwrite_data": True}))
    start(run)
    assert any(p.name.startswith(".tiny.replaced") for p in node.parent.iterdir())  # set aside

    class Boom(RuntimeError):
        pass

    def explode(*a, **k):
        raise Boom("disk on fire")
    run.task.evaluate = explode
    with pytest.raises(Boom):
        train(run)
    assert rows(node) == old_rows  # the old run is back, whole
    assert not [p for p in node.parent.iterdir() if p.name.startswith(".tiny.replaced")]
    # a replacement that reaches its first checkpoint removes the old run
    assert train_main(["--parameters", str(new), "--overwrite_data"]) == 0
    assert len(rows(node)) == 3
    assert not [p for p in node.parent.iterdir() if p.name.startswith(".tiny.replaced")]


# -- corruption: detected, repaired from what survives, or refused; never silent -------------------
@pytest.fixture(scope="module")
def _whole_and_damaged_once(tiny_sets, tmp_path_factory) -> Path:
    """Trained once per module: each test damages its own copy (whole_and_damaged)."""
    from conftest import tiny_toml
    base = tmp_path_factory.mktemp("whole_and_damaged")
    path = base / "cfg.toml"
    path.write_text(tiny_toml(tiny_sets, base / "Results", base / "cache", num_epochs=3,
                              extra_training='logging = "text"'))
    assert train_main(["--parameters", str(path), "--experiment_name", "whole"]) == 0
    assert train_main(["--parameters", str(path), "--experiment_name", "damaged",
                       "--num_epochs", "2"]) == 0
    return base / "Results"


@pytest.fixture
def whole_and_damaged(_whole_and_damaged_once, write_config, tmp_path):
    """A 3-epoch run 'whole', and a 2-epoch run 'damaged' of the same config to continue: a
    copy (`cp -a`: last.pt stays a hard link) of runs trained once per module."""
    import subprocess
    subprocess.run(["cp", "-a", str(_whole_and_damaged_once), str(tmp_path / "Results")],
                   check=True)
    path = write_config(num_epochs=3, extra_training='logging = "text"')
    return path, tmp_path / "Results" / "whole", tmp_path / "Results" / "damaged"


def _continue(path: Path, *flags: str) -> int:
    return train_main(["--parameters", str(path), "--experiment_name", "damaged",
                       "--continue_from_epoch", "last", *flags])


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["delete", "truncate_mid_row", "binary"])
def test_damaged_summary_is_rebuilt_from_checkpoints(whole_and_damaged, damage, caplog):
    from conftest import no_timing, same_weights, weights
    path, whole, node = whole_and_damaged
    summary = node / "result_outputs" / "summary.csv"
    if damage == "delete":
        summary.unlink()
    elif damage == "truncate_mid_row":
        text = summary.read_text()
        summary.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 12])
    else:
        summary.write_bytes(b"\x00\xff\xfe garbage \x89PNG" * 20)
    assert train_main(["--parameters", str(path), "--experiment_name", "damaged", "--continue_from_epoch",
                       "last"]) == 0
    assert "rebuilt from their checkpoints" in caplog.text
    assert no_timing(rows(node)) == no_timing(rows(whole))
    assert same_weights(weights(node, 3), weights(whole, 3))


@pytest.mark.slow
def test_unverifiable_or_misnamed_checkpoints_are_refused(whole_and_damaged, caplog):
    from conftest import no_timing
    path, whole, node = whole_and_damaged
    from conftest import same_weights, weights
    models = node / "saved_models"
    # an intact checkpoint whose checksum file was deleted: verified by the CRC-32 of every
    # record inside it, used, and its checksum file written again
    sidecar = models / "epoch_2.pt.sha256"
    digest = sidecar.read_text()
    sidecar.unlink()
    assert _continue(path) == 0
    assert "every record inside it passed its CRC-32 check" in caplog.text
    assert sidecar.read_text() == digest
    assert not [p.name for p in models.iterdir() if p.name.endswith(".corrupt")]
    assert no_timing(rows(node)) == no_timing(rows(whole))
    assert same_weights(weights(node, 3), weights(whole, 3))
    # damaged bytes and no checksum file: refused, named
    data = bytearray((models / "epoch_3.pt").read_bytes())
    for i in range(len(data) // 3, 2 * len(data) // 3, 97):
        data[i] ^= 0xFF
    (models / "epoch_3.pt").write_bytes(bytes(data))
    (models / "epoch_3.pt.sha256").unlink()
    (models / "last.pt").unlink()
    (models / "last.pt.sha256").unlink()
    with pytest.raises(ConfigError, match="epoch_3.pt: its checksum file epoch_3.pt.sha256 is "
                                          "missing and the file fails its own integrity check"):
        prepare(load_config(path, {"experiment_name": "damaged", "continue_from_epoch": 3,
                                   "new_branch": True}))
    (models / "epoch_3.pt").write_bytes((whole / "saved_models" / "epoch_3.pt").read_bytes())
    # a checkpoint copied over another epoch's (with its checksum) is refused, named
    for suffix in ("", ".sha256"):
        (models / f"epoch_3.pt{suffix}").write_bytes((models / f"epoch_1.pt{suffix}").read_bytes())
    (models / "epoch_3.pt.sha256").write_text((models / "epoch_1.pt.sha256").read_text())
    with pytest.raises(ConfigError, match="epoch_3.pt: holds epoch 1, not the epoch of its name"):
        prepare(load_config(path, {"experiment_name": "damaged", "continue_from_epoch": 3,
                                   "new_branch": True}))
    (models / "epoch_1.pt.sha256").write_text("")
    with pytest.raises(ConfigError, match="epoch_1.pt: its checksum file epoch_1.pt.sha256 is empty"):
        prepare(load_config(path, {"experiment_name": "damaged", "continue_from_epoch": 1,
                                   "new_branch": True}))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["delete", "truncate", "missing_key", "not_a_number"])
def test_damaged_lineage_is_recovered_and_keeps_protecting_the_parent(write_config, tmp_path,
                                                                      damage, capsys):
    from rumpy.cli.main import main as rumpy_main
    path = write_config(num_epochs=3, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "2", "--new_branch",
                       "--new_branch_name", "b", "--num_epochs", "4"]) == 0
    node = tmp_path / "Results" / "tiny"
    lineage = node / "b" / "lineage.json"
    good = json.loads(lineage.read_text())
    if damage == "delete":
        lineage.unlink()
    elif damage == "truncate":
        lineage.write_text(lineage.read_text()[:20])
    elif damage == "missing_key":
        lineage.write_text(json.dumps({k: v for k, v in good.items() if k != "fork_epoch"}))
    else:
        lineage.write_text(json.dumps({**good, "fork_epoch": "two"}))
    assert rumpy_main(["tree", str(node)]) == 0
    assert "fork @ 2" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="has branches"):  # the parent is still protected
        prepare(load_config(path, {"overwrite_data": True}))
    with pytest.raises(ConfigError, match="branches were forked from epochs"):
        prepare(load_config(path, {"continue_from_epoch": 1, "overwrite_data": True}))
    assert train_main(["--parameters", str(path), "--branch_root", "b", "--continue_from_epoch",
                       "last", "--num_epochs", "5"]) == 0
    assert json.loads(lineage.read_text())["fork_epoch"] == 2  # repaired on disk


def test_garbage_files_give_one_line_answers(write_config, tmp_path, capsys):
    from rumpy.cli.main import main as rumpy_main
    path = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    (node / "status.json").write_text("[1, 2, 3]")  # valid JSON, not an object
    (node / ".lock").write_bytes(b"\x00garbage{")
    summary = node / "result_outputs" / "summary.csv"
    summary.write_text(summary.read_text()[:-30])  # cut mid-row
    assert rumpy_main(["tree", str(node)]) == 0
    out = capsys.readouterr().out
    assert "tiny  [finished]" in out  # derived: its checkpoints reach num_epochs
    assert rumpy_main(["export", str(node)]) == 0
    # header + the whole row + the cut one, rebuilt from its checkpoint (tree/witness.py)
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    summary.write_bytes(b"\x89PNG\x00\x00" * 50)
    assert rumpy_main(["export", str(node)]) == 0 and rumpy_main(["tree", str(node)]) == 0


def test_status_is_derived_from_the_disk_after_a_kill_before_the_final_status(write_config, tmp_path,
                                                                             capsys):
    from rumpy.cli.main import main as rumpy_main
    path = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    status = json.loads((node / "status.json").read_text())
    (node / "status.json").write_text(json.dumps({**status, "state": "running"}))
    assert rumpy_main(["tree", str(node)]) == 0
    assert "[finished]" in capsys.readouterr().out
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "3"]) == 0
    assert len(rows(node)) == 3


def test_leftover_temp_files_are_cleaned_and_files_keep_the_umask(write_config, tmp_path):
    import os
    import stat
    path = write_config(num_epochs=1, extra_training='logging = "text"')
    old = os.umask(0o002)  # a group-shared results folder
    try:
        assert train_main(["--parameters", str(path)]) == 0
    finally:
        os.umask(old)
    node = tmp_path / "Results" / "tiny"
    for f in (node / "config.toml", node / "result_outputs" / "summary.csv",
              node / "saved_models" / "epoch_1.pt", node / "status.json"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o664 == 0o664, f
    leftovers = [node / "result_outputs" / ".summary.csv.k3j4.tmp",
                 node / "saved_models" / ".epoch_2.pt.x9.tmp", node / ".status.json.a1.tmp"]
    samples = sorted((node / "result_outputs").glob("epoch_*_samples"))
    assert samples
    leftovers.append(samples[0] / ".chelsea_0.png.q7.tmp")  # a sample killed mid-write
    for f in leftovers:
        f.write_bytes(b"half a write")
    mine = node / "result_outputs" / "notes.tmp"  # not rumpy's pattern: left alone
    mine.write_text("keep")
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "2"]) == 0
    assert not any(f.exists() for f in leftovers) and mine.read_text() == "keep"


def test_a_stray_file_where_a_samples_folder_goes_only_warns(write_config, tmp_path, caplog):
    path = write_config(num_epochs=2)
    node = tmp_path / "Results" / "tiny"
    run = prepare(load_config(path))
    start(run)
    (node / "result_outputs" / "epoch_1_samples").write_text("a stray file")
    assert train(run) == "finished"
    assert "Visuals: could not write" in caplog.text
    assert (node / "result_outputs" / "epoch_2_samples").is_dir() and len(rows(node)) == 2


# -- interrupts ---------------------------------------------------------------------------------
def _slow(write_config, workers: int, epochs: int = 3) -> Path:
    text = write_config(num_epochs=epochs, params="num_features = 16\nnum_blocks = 2",
                        extra_training='logging = "text"').read_text()
    text = text.replace("crop = 12", "crop = 16\nrepeat = 60").replace(
        "dataloader_threads = 0", f"dataloader_threads = {workers}")
    return write_config(name="slow.toml", text=text)


def _spawn_group(path: Path, *flags: str):
    import subprocess
    import sys
    # its own process group, as a cluster's job step is: SIGTERM goes to every process in it
    return subprocess.Popen([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait_training(node: Path, proc, epochs_done: int = 1) -> None:
    import time
    end = time.time() + 120
    while not (node / "status.json").exists() or \
            json.loads((node / "status.json").read_text()).get("epochs_done") != epochs_done:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end
        time.sleep(0.01)
    time.sleep(0.3)


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_workers_saves_and_continues_exactly(write_config,
                                                                             tmp_path):
    import os
    import signal
    from conftest import no_timing, same_weights, weights
    path = _slow(write_config, workers=2)
    assert train_main(["--parameters", str(path), "--experiment_name", "whole"]) == 0
    node = tmp_path / "Results" / "preempted"
    proc = _spawn_group(path, "--experiment_name", "preempted")
    _wait_training(node, proc)
    os.killpg(proc.pid, signal.SIGTERM)  # what a scheduler's pre-emption sends
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert json.loads((node / "status.json").read_text())["state"] == "interrupted"
    assert (node / "saved_models" / "interrupted.pt").exists()
    assert train_main(["--parameters", str(path), "--experiment_name", "preempted",
                       "--continue_from_epoch", "last"]) == 0
    whole = tmp_path / "Results" / "whole"
    assert no_timing(rows(node)) == no_timing(rows(whole))
    assert same_weights(weights(node, 3), weights(whole, 3))


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_dataloader_workers_die_with_a_killed_trainer(write_config, tmp_path):
    """Workers ignore SIGTERM (so that the trainer can save on a group SIGTERM): orphaned by a
    SIGKILL of the trainer they must still go, not live on forever."""
    import os
    import signal
    import time
    path = _slow(write_config, workers=2, epochs=50)
    proc = _spawn_group(path)
    _wait_training(tmp_path / "Results" / "tiny", proc)
    workers = _children(proc.pid)
    assert len(workers) >= 2, workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # at once: torch's own watchdog looks only every 5 s, and only while a worker waits for work
    # (the adversarial campaign found orphans that lived on)
    end = time.time() + 3
    while any(_alive(w) for w in workers) and time.time() < end:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leave them behind when the test fails
        os.kill(w, signal.SIGKILL)
    assert not left, "DataLoader workers outlived their killed trainer"


def test_ctrl_c_at_any_moment_of_start_up_leaves_no_half_made_folder(write_config, tmp_path):
    import signal
    import time
    path = write_config(num_epochs=1, extra_training='logging = "text"')
    node = tmp_path / "Results" / "tiny"
    outcomes = set()
    for delay in (0.3, 0.8, 1.3, 1.8, 2.3, 2.8, 3.3, 4.0):
        proc = _spawn_group(path)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=120)[0]
        assert "Traceback" not in output, output
        assert proc.returncode in (0, 130, -signal.SIGINT), output  # -2: a shell shows 130
        if node.exists():  # whole, with its config, and usable
            assert (node / "config.toml").is_file()
            outcomes.add("folder")
            assert train_main(["--parameters", str(path), "--overwrite_data"]) == 0
            import shutil
            shutil.rmtree(node)
        else:
            outcomes.add("nothing")
        assert not [p for p in node.parent.glob(".*")] if node.parent.exists() else True
    assert "nothing" in outcomes  # some interrupts did land during start-up


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system of its own (tmpfs; needs root, as on the project's machines)."""
    import subprocess
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)])


@pytest.mark.slow
def test_full_disk_ends_the_run_with_one_line_and_continuing_is_exact(write_config, tmp_path,
                                                                     small_disk):
    import subprocess
    import sys
    from conftest import no_timing
    from rumpy.core.checkpoint import load_checkpoint
    text = write_config(num_epochs=25, aim=True).read_text()
    whole = write_config(name="whole.toml", text=text)
    assert train_main(["--parameters", str(whole), "--experiment_name", "whole"]) == 0
    path = write_config(name="small.toml", text=text.replace(str(tmp_path / "Results"),
                                                             str(small_disk / "Results")))
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)],
                          capture_output=True, text=True, timeout=120)  # with Aim: no hang
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "disk full (No space left on device)" in proc.stderr
    node = small_disk / "Results" / "tiny"
    saved = sorted(int(p.stem.split("_")[1]) for p in (node / "saved_models").glob("epoch_*.pt"))
    assert saved and saved[-1] < 25
    for epoch in saved[:-1]:  # all but perhaps the one being written are whole and verify
        assert load_checkpoint(node / "saved_models" / f"epoch_{epoch}.pt")["epoch"] == epoch
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    proc = subprocess.run([sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path),
                           "--continue_from_epoch", "last"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert no_timing(rows(node)) == no_timing(rows(tmp_path / "Results" / "whole"))


def _read_only(folder: Path) -> None:
    """A read-only bind mount over `folder` (root can write through permission bits, not
    through a read-only mount)."""
    import subprocess
    made = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot bind-mount here: {made.stderr.decode().strip()}")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)


@pytest.mark.slow
def test_a_read_only_saved_models_is_one_line_before_or_during_training(write_config, tmp_path,
                                                                        caplog, monkeypatch):
    """A continue into a read-only saved_models/ is refused before anything is written; one
    made read-only while the run trains ends it with one line (no traceback), and once it is
    writable again the continue is exact."""
    import subprocess
    from conftest import no_timing
    from rumpy.training import setup
    path = write_config(num_epochs=1, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    models = node / "saved_models"
    _read_only(models)
    try:
        before = {p: p.stat().st_mtime_ns for p in node.rglob("*")}
        assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                           "--num_epochs", "3"]) == 2
        assert f"{models} cannot be written (a read-only file system)" in caplog.text
        assert {p: p.stat().st_mtime_ns for p in node.rglob("*")} == before
    finally:
        subprocess.run(["umount", "-l", str(models)])
    start = setup.start

    def start_then_read_only(run):  # the run has started when the mount turns read-only
        start(run)
        _read_only(models)
    monkeypatch.setattr(setup, "start", start_then_read_only)
    caplog.clear()
    try:
        code = train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                           "--num_epochs", "3"])
    finally:
        subprocess.run(["umount", "-l", str(models)])
    assert code == 4 and "Traceback" not in caplog.text
    assert "cannot write" in caplog.text and "Read-only file system" in caplog.text
    monkeypatch.undo()
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "3"]) == 0
    whole = write_config(name="whole.toml", num_epochs=3, experiment="whole",
                         extra_training='logging = "text"')
    assert train_main(["--parameters", str(whole)]) == 0
    assert no_timing(rows(node)) == no_timing(rows(tmp_path / "Results" / "whole"))


@pytest.mark.slow
def test_a_branch_replaced_by_a_symlink_is_never_followed(write_config, tmp_path, capsys):
    import shutil
    from rumpy.cli.main import main as rumpy_main
    path = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "1", "--new_branch",
                       "--new_branch_name", "b", "--num_epochs", "3"]) == 0
    node = tmp_path / "Results" / "tiny"
    outside = tmp_path / "outside"
    shutil.move(str(node / "b"), str(outside))
    (node / "b").symlink_to(outside)
    before = {p: p.stat().st_mtime_ns for p in outside.rglob("*")}
    with pytest.raises(ConfigError, match="is a symbolic link; rumpy follows none"):
        prepare(load_config(path, {"branch_root": "b", "continue_from_epoch": "last",
                                   "num_epochs": 4}))
    assert rumpy_main(["tree", str(node)]) == 0
    assert "b  [" not in capsys.readouterr().out  # not shown as a branch
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "3"]) == 0  # the root trains on; nothing outside changes
    assert {p: p.stat().st_mtime_ns for p in outside.rglob("*")} == before


def test_found_by_the_adversarial_campaign(write_config, tmp_path, tiny_sets, capsys):
    """prepare-data never overwrites the HR folder it reads; optimizer flags are booleans, not
    truthy strings; export/plot never write into a run folder."""
    import shutil
    from rumpy.cli.main import main as rumpy_main
    hr = tmp_path / "hr"
    shutil.copytree(tiny_sets["train_hr"], hr)
    before = {p.name: p.read_bytes() for p in hr.iterdir()}
    assert rumpy_main(["prepare-data", "--hr", str(hr), "--out", str(hr), "--scale", "2",
                       "--naming", "same"]) == 2
    assert rumpy_main(["prepare-data", "--hr", str(hr), "--out", str(tmp_path / "lr"),
                       "--hr-out", str(hr), "--scale", "3"]) == 2
    (hr / "zz_broken.png").write_bytes(b"not an image")
    assert rumpy_main(["prepare-data", "--hr", str(hr), "--out", str(tmp_path / "lr2"),
                       "--scale", "2"]) == 2
    assert not (tmp_path / "lr2").exists() or not any((tmp_path / "lr2").iterdir())
    (hr / "zz_broken.png").unlink()
    assert {p.name: p.read_bytes() for p in hr.iterdir()} == before
    path = write_config(extra_params='optimizer_params = {maximize = "false"}')
    with pytest.raises(ConfigError, match=r"optimizer_params.maximize: expected true or false"):
        prepare(load_config(path))
    path = write_config(num_epochs=1, extra_training='logging = "text"')
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    config = (node / "config.toml").read_bytes()
    assert rumpy_main(["plot", str(node), "-o", str(node / "config.toml")]) == 2
    assert rumpy_main(["export", str(node), "-o", str(node / "result_outputs" / "summary.csv")]) == 2
    assert rumpy_main(["export", str(node), "-o", str(tmp_path / "Results")]) == 2
    assert (node / "config.toml").read_bytes() == config
    assert rumpy_main(["export", str(node), "-o", str(tmp_path / "new" / "dir" / "all.csv")]) == 0


@pytest.mark.parametrize("where", ["tiny/train.log", "tiny/.tree.lock", ".tiny.start.lock"])
def test_a_folder_where_rumpy_keeps_a_file_is_a_one_line_error(write_config, tmp_path, caplog,
                                                               where):
    cfg = write_config(num_epochs=1, extra_training='logging = "text"')
    assert train_main(["--parameters", str(cfg)]) == 0
    path = tmp_path / "Results" / where
    if path.exists():
        path.rename(path.with_name(path.name + ".moved"))
    path.mkdir()
    (path / "x").write_text("someone's")
    caplog.clear()
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "last",
                       "--num_epochs", "2"]) == 2
    assert f"{path}" in caplog.text and "Traceback" not in caplog.text
    assert "lock file" in caplog.text or "log file" in caplog.text
    node = tmp_path / "Results" / "tiny"
    assert not (node / "saved_models" / "epoch_2.pt").exists()
    assert (path / "x").read_text() == "someone's"
    assert _status(node)["state"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_lost_config_toml_is_recovered_from_the_checkpoints(write_config, tmp_path, caplog,
                                                              damage):
    cfg = write_config(num_epochs=2, extra_training='logging = "text"')
    assert train_main(["--parameters", str(cfg)]) == 0
    node = tmp_path / "Results" / "tiny"
    config = node / "config.toml"
    whole = config.read_text()
    if damage == "deleted":
        config.unlink()
    else:  # cut in half: valid TOML that lacks [model] and [data]
        config.write_text(whole[: whole.index("[model]")])
    caplog.clear()
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "last",
                       "--num_epochs", "3"]) == 0
    assert "the config is recovered from" in caplog.text
    assert "architecture" not in caplog.text
    assert [int(r["epoch"]) for r in rows(node)] == [1, 2, 3]
    assert config.read_text().replace("num_epochs = 3", "num_epochs = 2") == whole
    # nothing to recover from: one line, nothing written
    config.unlink()
    for path in (node / "saved_models").iterdir():
        path.unlink()
    caplog.clear()
    assert train_main(["--parameters", str(cfg), "--continue_from_epoch", "last",
                       "--num_epochs", "4"]) == 2
    assert "config.toml is missing, and no verified checkpoint of the node holds its config" \
        in caplog.text
    assert not config.exists()


def test_a_process_with_live_loader_workers_exits(write_config, tmp_path):
    """Workers ignore SIGTERM (above), which multiprocessing's exit handler sends daemonic
    children before joining them: a process ending while its persistent workers live (a loader
    iterated once, never closed) used to wait forever at exit (pytest itself hung after its
    summary). It exits now, without a traceback."""
    import subprocess
    import sys
    text = write_config().read_text().replace("dataloader_threads = 0", "dataloader_threads = 1")
    path = write_config(name="workers.toml", text=text)
    script = ("import sys\nfrom rumpy.catalog import load_config\n"
              "from rumpy.training.setup import prepare\n"
              "run = prepare(load_config(sys.argv[1]))\n"
              "batches = iter(run.loaders.train)\nnext(batches)\n"
              "assert run.loaders.train.persistent_workers\nprint('trained a batch')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained a batch" in proc.stdout and "Traceback" not in proc.stderr
