"""Sweep faults a chaos campaign found, each done for real: a cell killed during its start-up
restarts; a complete cell whose status says crashed is finished; `rumpy table` names the cells
it cannot use; a damaged sweep.json is a one-line error."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import rows
from rumpy.cli.main import main as rumpy_main

GRID = '[sweep]\nseeds = [1, 2, 3]\n'


def grid_file(write_config) -> Path:
    path = write_config(num_epochs=2, experiment="sw",
                        extra_training='logging = "text"\nsave_samples = false')
    path.write_text(path.read_text() + GRID)
    return path


def status(node: Path) -> dict:
    return json.loads((node / "status.json").read_text())


def starts(node: Path) -> int:
    return sum(1 for line in (node / "train.log").read_text().splitlines()
               if "training edsr" in line)


def _half_made(folder: Path) -> list[Path]:
    """Cell folders (not the hidden ones a folder is built in) with no epoch saved."""
    return [p.parent for p in folder.glob("*/config.toml") if not p.parent.name.startswith(".")
            and not list((p.parent / "saved_models").glob("epoch_*.pt"))]


@pytest.mark.slow
def test_sweep_faults_are_recovered_or_named(write_config, tmp_path, caplog):
    path = grid_file(write_config)
    folder = tmp_path / "Results" / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.main", "sweep", str(path),
                             "--no-table"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # 1. killed during its start-up: the cell's folder exists, no epoch is saved. SIGSTOP first,
    # then the state is checked on a frozen process, then SIGKILL.
    deadline = time.time() + 240
    while time.time() < deadline:
        if folder.is_dir() and _half_made(folder):
            os.killpg(proc.pid, signal.SIGSTOP)
            if _half_made(folder):
                break
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    half = _half_made(folder)
    assert len(half) == 1
    caplog.clear()
    assert rumpy_main(["sweep", str(path), "--no-table"]) == 0
    assert f"restarting cell {half[0].name}" in caplog.text
    cells = [c["name"] for c in json.loads((folder / "sweep.json").read_text())["cells"]]
    for name in cells:
        assert status(folder / name)["state"] == "finished", name
        assert [r["epoch"] for r in rows(folder / name)] == ["1", "2"]
        assert starts(folder / name) == 1, name  # the half-made one in a fresh folder
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and "replaced" in p.name]

    # 2. a complete cell whose status says crashed (it died after its last checkpoint, before
    # its last summary row: the state the trainer's crash handler leaves)
    done = folder / cells[0]
    summary = done / "result_outputs" / "summary.csv"
    summary.write_text("".join(summary.read_text().splitlines(keepends=True)[:-1]))
    state = status(done)
    state.update(state="crashed", error="OSError: [Errno 28] No space left on device")
    (done / "status.json").write_text(json.dumps(state))
    assert rumpy_main(["sweep", str(path), "--no-table"]) == 0
    assert status(done)["state"] == "finished"
    assert [r["epoch"] for r in rows(done)] == ["1", "2"] and starts(done) == 1

    # 3. the table names a cell whose summary.csv or config.toml is gone: the rows are rebuilt
    # from its checkpoints (one warning naming the file), the cell without config.toml is left
    # out, and n shows it
    (folder / cells[1] / "result_outputs" / "summary.csv").unlink()
    (folder / cells[2] / "config.toml").unlink()
    caplog.clear()
    assert rumpy_main(["table", str(folder)]) == 0
    assert cells[1] in caplog.text and cells[2] in caplog.text
    assert "rebuilt" in caplog.text or "checkpoint" in caplog.text
    table = pd.read_csv(folder / "sweep_table.csv")
    assert table["n"].tolist() == [2]

    # 4. a damaged sweep.json: one line, for the table and the sweep alike
    for damage in ("{ not json", json.dumps({"name": "sw", "cells": "?"})):
        (folder / "sweep.json").write_text(damage)
        for argv in (["table", str(folder)], ["sweep", str(path), "--no-table"]):
            caplog.clear()
            assert rumpy_main(argv) == 2
            errors = [r for r in caplog.records if r.levelname == "ERROR"]
            assert len(errors) == 1 and "sweep.json is damaged" in errors[0].getMessage()
            assert "\n" not in errors[0].getMessage() and "Traceback" not in caplog.text
