"""Aim tracking for real: runs per node equal summary.csv, continue reopens, branches carry their
history, a broken repo never stops training, and `aim up` serves on loopback and stops cleanly."""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rumpy.cli.train import main as train_main

AIM = str(Path(sys.executable).parent / "aim")


def rows(node: Path) -> list[dict]:
    with open(node / "result_outputs" / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def aim_runs(home: Path) -> dict:
    """{hash: (run, {(metric, set or subset): {step: value}})} read back through Aim's SDK."""
    # the SDK's query index sees finished runs only after a reindex
    subprocess.run([AIM, "storage", "--repo", str(home), "reindex", "-y"], check=True,
                   capture_output=True, timeout=120)
    from aim import Repo
    repo = Repo.from_path(str(home))
    out = {}
    for run in repo.iter_runs():
        metrics = {}
        for m in run.metrics():
            if m.name.startswith("__system__"):
                continue
            ctx = m.context.to_dict()
            frame = m.dataframe()
            metrics[(m.name, ctx.get("set", ctx.get("subset")))] = dict(zip(frame["step"],
                                                                            frame["value"]))
        out[run.hash] = (run, metrics)
    return out


def status(node: Path) -> dict:
    return json.loads((node / "status.json").read_text())


def assert_matches_summary(metrics: dict, summary: list[dict], set_name: str) -> None:
    for row in summary:
        epoch = int(row["epoch"])
        assert metrics[("loss", "train")][epoch] == float(row["train-loss"])
        assert metrics[("learning_rate", "train")][epoch] == float(row["learning-rate"])
        for column, name in (("val-PSNR", "PSNR"), ("val-SSIM", "SSIM"), ("val-loss", "loss")):
            assert metrics[(name, set_name)][epoch] == float(row[column])


@pytest.mark.slow
def test_root_and_branch_runs_equal_summary(write_config, tmp_path):
    path = write_config(num_epochs=3, aim=True)
    assert train_main(["--parameters", str(path)]) == 0
    lr = path.with_name("lr.toml")
    lr.write_text(path.read_text().replace("lr = 1e-3", "lr = 3e-4"))
    assert train_main(["--parameters", str(lr), "--continue_from_epoch", "2", "--new_branch",
                       "--new_branch_name", "lr_low", "--num_epochs", "4"]) == 0
    root = tmp_path / "Results" / "tiny"
    runs = aim_runs(tmp_path / "Results")
    assert len(runs) == 2
    root_hash, branch_hash = status(root)["aim_run_hash"], status(root / "lr_low")["aim_run_hash"]
    root_run, root_metrics = runs[root_hash]
    branch_run, branch_metrics = runs[branch_hash]
    assert root_run.experiment == branch_run.experiment == "tiny"
    assert_matches_summary(root_metrics, rows(root), "chelsea")
    # the branch's curves are whole: inherited epochs 1-2, then its own 3-4
    branch_rows = rows(root / "lr_low")
    assert [r["inherited"] for r in branch_rows] == ["1", "1", "0", "0"]
    assert sorted(branch_metrics[("PSNR", "chelsea")]) == [1, 2, 3, 4]
    assert_matches_summary(branch_metrics, branch_rows, "chelsea")
    # sample strips (bicubic | SR | HR) as Aim images at each validation epoch
    from aim.storage.context import Context
    images = root_run.get_image_sequence("samples", Context({"subset": "val", "set": "chelsea"}))
    assert images.data.indices_list() == [1, 2, 3]
    assert images.record_length() == 1  # num_samples = 1 strip per set
    lineage = branch_run["rumpy"]
    assert lineage["parent_aim_run"] == root_hash and lineage["fork_epoch"] == 2
    assert lineage["node"] == "lr_low"
    assert branch_run["hparams"]["model"]["internal_params"]["lr"] == 3e-4


@pytest.mark.slow
def test_in_place_continue_keeps_one_aim_run(write_config, tmp_path):
    path = write_config(num_epochs=2, aim=True)
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    first = status(node)["aim_run_hash"]
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last",
                       "--num_epochs", "4"]) == 0
    assert status(node)["aim_run_hash"] == first
    runs = aim_runs(tmp_path / "Results")
    assert list(runs) == [first]
    assert_matches_summary(runs[first][1], rows(node), "chelsea")


def test_broken_aim_repo_does_not_stop_training(write_config, tmp_path, caplog):
    (tmp_path / "Results").mkdir()
    (tmp_path / "Results" / ".aim").write_text("not a repository")
    path = write_config(num_epochs=2, aim=True)
    with caplog.at_level("WARNING", logger="rumpy"):
        assert train_main(["--parameters", str(path)]) == 0
    assert caplog.text.count("Aim tracking is off for this run") == 1
    node = tmp_path / "Results" / "tiny"
    assert len(rows(node)) == 2 and status(node)["state"] == "finished"
    assert "aim_run_hash" not in status(node)


def test_nan_and_inf_never_crash_tracking(tmp_path):
    from rumpy.tracking.aim_tracker import AimTracker
    tracker = AimTracker._open(tmp_path, "nan", "", None, {"config": {}, "lineage": {}}, ["set"])
    tracker.track_row({"epoch": 1, "train-loss": float("nan"), "val-PSNR": float("inf"),
                       "learning-rate": 1e-3})
    tracker.close()
    metrics = aim_runs(tmp_path)[tracker.hash][1]
    assert metrics[("PSNR", "set")][1] == float("inf")
    assert metrics[("loss", "train")][1] != metrics[("loss", "train")][1]  # NaN


def test_an_existing_aim_repository_is_not_migrated_again(tmp_path, monkeypatch):
    """Aim's init migrates its database in a new Python process (~1 s of CPU a run): only a new
    repository pays for it; later runs open the existing one and track as well."""
    import aim.storage.structured.db as db
    from rumpy.tracking.aim_tracker import AimTracker
    calls, real = [], db.upgrade_database
    monkeypatch.setattr(db, "upgrade_database", lambda url: (calls.append(url), real(url))[1])
    hashes = []
    for n in range(3):
        tracker = AimTracker._open(tmp_path, "once", f"n{n}", None,
                                   {"config": {}, "lineage": {}}, ["set"])
        tracker.track_row({"epoch": 1, "train-loss": 0.5 + n, "learning-rate": 1e-3})
        tracker.close()
        hashes.append(tracker.hash)
    assert len(calls) == 1
    runs = aim_runs(tmp_path)
    assert [runs[h][1][("loss", "train")][1] for h in hashes] == [0.5, 1.5, 2.5]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_aim_up_serves_on_loopback_and_stops_cleanly(write_config, tmp_path):
    path = write_config(num_epochs=1, aim=True)
    assert train_main(["--parameters", str(path)]) == 0
    run_hash = status(tmp_path / "Results" / "tiny")["aim_run_hash"]
    port = _free_port()
    # its own session: `aim up` spawns a uvicorn child, and both must go
    proc = subprocess.Popen([AIM, "up", "--repo", str(tmp_path / "Results"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 90
        body = None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/projects/", timeout=2) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                assert proc.poll() is None, "aim up exited"
                time.sleep(0.5)
        assert body is not None and Path(body["path"]) == tmp_path / "Results"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs/search/run/?q=", timeout=10) as r:
            assert run_hash.encode() in r.read()  # the UI's own search finds the run
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("aim up left processes behind")
