"""Sweeps: grid x seeds cells as ordinary run folders, resumed after a kill with no cell trained
twice, shared by concurrent workers and submitit jobs; `rumpy table` means and stds."""
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
from rumpy.config import ConfigError
from rumpy.sweep.spec import read_sweep

GRID = ('[sweep]\ngrid = { "model.internal_params.lr" = [1e-3, 5e-4], '
        '"model.internal_params.num_blocks" = [1, 2] }\nseeds = [1, 2]\n')
SMALL = '[sweep]\ngrid = { "model.internal_params.lr" = [1e-3, 5e-4] }\nseeds = [1, 2]\n'


def sweep_file(write_config, sweep: str, num_epochs: int = 2) -> Path:
    path = write_config(num_epochs=num_epochs, experiment="sw",
                        extra_training='logging = "text"\nsave_samples = false')
    path.write_text(path.read_text() + sweep)
    return path


def starts(cell: Path) -> int:
    """How many times training of this cell started (one line each in its train.log)."""
    return sum(1 for line in (cell / "train.log").read_text().splitlines()
               if "training edsr" in line)


@pytest.mark.slow
def test_grid_times_seeds_runs_every_cell_and_tables_mean_and_std(write_config, tmp_path,
                                                                  capsys, caplog):
    path = sweep_file(write_config, GRID)
    assert rumpy_main(["sweep", str(path)]) == 0
    folder = tmp_path / "Results" / "sw"
    manifest = json.loads((folder / "sweep.json").read_text())
    names = [c["name"] for c in manifest["cells"]]
    assert len(names) == 8 and "lr=0.001,num_blocks=1,seed=1" in names
    for name in names:
        cell = folder / name
        assert json.loads((cell / "status.json").read_text())["state"] == "finished"
        assert starts(cell) == 1
    sweep = read_sweep(path)  # each cell's config carries its sweep (Aim groups by it)
    assert sweep.config(sweep.cells[-1]).sweep == {
        "name": "sw", "cell": "lr=0.0005,num_blocks=2,seed=2", "seed": 2,
        "model.internal_params.lr": 5e-4, "model.internal_params.num_blocks": 2}
    config = (folder / "lr=0.0005,num_blocks=2,seed=2" / "config.toml").read_text()
    assert "lr = 0.0005" in config and "num_blocks = 2" in config and "seed = 2" in config
    # the table: 4 settings, n = 2, mean and std of each setting's best val-PSNR
    table = pd.read_csv(folder / "sweep_table.csv")
    assert len(table) == 4 and set(table["n"]) == {2}
    best = {}
    for name in names:
        values = [float(r["val-PSNR"]) for r in rows(folder / name)]
        best[name] = max(values)
    first = table[(table["model.internal_params.lr"] == 1e-3) &
                  (table["model.internal_params.num_blocks"] == 1)].iloc[0]
    pair = pd.Series([best["lr=0.001,num_blocks=1,seed=1"], best["lr=0.001,num_blocks=1,seed=2"]])
    assert first["val-PSNR"] == pytest.approx(pair.mean())
    assert first["val-PSNR-std"] == pytest.approx(pair.std(ddof=1))
    assert table["best"].fillna("").tolist().count("*") == 1
    assert table.iloc[0]["val-PSNR"] == table["val-PSNR"].max()  # best first
    md = (folder / "sweep_table.md").read_text()
    assert "| model.internal_params.lr | model.internal_params.num_blocks | val-PSNR (mean ± std)" in md
    # running it again: nothing is trained again
    assert rumpy_main(["sweep", str(path)]) == 0
    assert all(starts(folder / n) == 1 for n in names)
    # rumpy table on any folder of runs, grouped by chosen keys, at the last epoch
    capsys.readouterr()
    assert rumpy_main(["table", str(folder), "--by", "training.seed", "--at", "last",
                       "--metric", "PSNR,val-SSIM", "-o", str(tmp_path / "by_seed")]) == 0
    out = capsys.readouterr().out
    assert "| training.seed | val-PSNR (mean ± std) | val-SSIM (mean ± std) | n | best |" in out
    by_seed = pd.read_csv(tmp_path / "by_seed" / "sweep_table.csv")
    assert sorted(by_seed["training.seed"]) == [1, 2] and set(by_seed["n"]) == {4}
    assert len(pd.read_csv(folder / "sweep_table.csv")) == 4  # the sweep's own table stays
    # a typo in --by; a table of one run folder is printed, never written into the run
    caplog.clear()
    assert rumpy_main(["table", str(folder), "--by", "training.sed"]) == 2
    assert "did you mean 'training.seed'?" in caplog.text
    one = folder / names[0]
    assert rumpy_main(["table", str(one), "--by", "training.seed"]) == 0
    assert not list(one.glob("sweep_table*"))


@pytest.mark.parametrize("sweep, message", [
    ("[sweep]\ngird = {}\n", "sweep.gird: unknown key; did you mean 'grid'?"),
    ('[sweep]\ngrid = { "model.internal_params.lr" = 1e-3 }\n',
     "sweep.grid.model.internal_params.lr: expected a non-empty list"),
    ('[sweep]\ngrid = { "training.num_epochz" = [1, 2] }\n',
     "sweep cell num_epochz=1,seed=3: training.num_epochz: unknown key; did you mean 'num_epochs'"),
    ('[sweep]\ngrid = { "training.num_epochs" = ["a"] }\n',
     "training.num_epochs: expected an integer"),
    ("[sweep]\nseeds = [1, 1]\n", "sweep.seeds: expected a list of distinct integers"),
    ("[sweep]\nseeds = [1]\nrepetitions = 2\n", "give seeds or repetitions, not both"),
    ('[sweep]\ngrid = { "training.seed" = [1, 2] }\n', "set by the sweep itself"),
    ("", "sweep: missing: a sweep file has a [sweep] table"),
])
def test_bad_sweeps_are_one_line_errors_before_anything_runs(write_config, tmp_path, sweep,
                                                             message):
    path = sweep_file(write_config, sweep)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        read_sweep(path)
    assert rumpy_main(["sweep", str(path)]) == 2
    assert not (tmp_path / "Results").exists()


def _cells_started(folder: Path) -> list[str]:
    return [p.parent.name for p in folder.glob("*/train.log")]


@pytest.mark.slow
def test_killed_sweep_resumes_and_no_cell_is_trained_twice(write_config, tmp_path):
    path = sweep_file(write_config, SMALL, num_epochs=3)
    folder = tmp_path / "Results" / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.main", "sweep", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    # kill it while its second cell trains (the first is finished)
    while time.time() < deadline:
        started = _cells_started(folder) if folder.exists() else []
        if len(started) >= 2 and any((folder / c / "saved_models" / "last.pt").exists()
                                     for c in started[1:]):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = [c for c in _cells_started(folder)
              if json.loads((folder / c / "status.json").read_text()).get("state") != "finished"]
    assert rumpy_main(["sweep", str(path), "--no-table"]) == 0
    cells = [c["name"] for c in json.loads((folder / "sweep.json").read_text())["cells"]]
    for name in cells:
        cell = folder / name
        assert json.loads((cell / "status.json").read_text())["state"] == "finished"
        assert [r["epoch"] for r in rows(cell)] == ["1", "2", "3"]
        assert starts(cell) == (2 if name in killed else 1), name


@pytest.mark.slow
def test_two_sweep_processes_share_the_cells(write_config, tmp_path):
    path = sweep_file(write_config, SMALL)
    folder = tmp_path / "Results" / "sw"
    procs = [subprocess.Popen([sys.executable, "-m", "rumpy.cli.main", "sweep", str(path),
                               "--no-table"], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=400)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    cells = [c["name"] for c in json.loads((folder / "sweep.json").read_text())["cells"]]
    trained = [{c for c in cells if f"starting cell {c}\n" in log} for log in logs]
    assert trained[0].isdisjoint(trained[1]) and trained[0] | trained[1] == set(cells)
    for name in cells:
        assert starts(folder / name) == 1
        assert json.loads((folder / name / "status.json").read_text())["state"] == "finished"


def test_slurm_without_slurm_is_one_line_before_anything_is_written(write_config, tmp_path,
                                                                     caplog):
    import shutil
    if shutil.which("sbatch") and shutil.which("srun"):
        pytest.skip("this machine has Slurm")
    pytest.importorskip("submitit")
    path = sweep_file(write_config, SMALL, num_epochs=1)
    assert rumpy_main(["sweep", str(path), "--launcher", "slurm"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "no Slurm here" in errors[0], errors
    assert not (tmp_path / "Results").exists()


@pytest.mark.slow
def test_workers_and_submitit_jobs_finish_every_cell(write_config, tmp_path):
    pytest.importorskip("submitit")
    path = sweep_file(write_config, SMALL, num_epochs=1)
    assert rumpy_main(["sweep", str(path), "--launcher", "submitit-local", "--workers", "2",
                       "--no-table"]) == 0
    folder = tmp_path / "Results" / "sw"
    assert (folder / ".submitit").is_dir()
    for cell in json.loads((folder / "sweep.json").read_text())["cells"]:
        assert starts(folder / cell["name"]) == 1
    # local worker processes, with a grid extended by a seed: only the new cells train
    path.write_text(path.read_text().replace("seeds = [1, 2]", "seeds = [1, 2, 3]"))
    assert rumpy_main(["sweep", str(path), "--workers", "2"]) == 0
    cells = json.loads((folder / "sweep.json").read_text())["cells"]
    assert len(cells) == 6
    assert all(starts(folder / c["name"]) == 1 for c in cells)
    assert set(pd.read_csv(folder / "sweep_table.csv")["n"]) == {3}


def _sweep_workers(folder: Path) -> list[int]:
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "rumpy.sweep.run" in text and str(folder) in text:
            out.append(int(cmdline.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_a_sweep_with_workers_stops_every_worker(write_config, tmp_path, sig):
    """kill (or kill -9) of `rumpy sweep --workers 2`: no worker lives on or starts another
    cell; running the sweep again finishes it, no finished cell trained twice."""
    path = sweep_file(write_config, SMALL, num_epochs=3)
    folder = tmp_path / "Results" / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.main", "sweep", str(path),
                             "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(_cells_started(folder) if folder.exists() else []) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    proc.wait(timeout=120)
    deadline = time.time() + 60
    while _sweep_workers(folder) and time.time() < deadline:
        time.sleep(0.2)
    assert not _sweep_workers(folder)
    started = set(_cells_started(folder))
    time.sleep(2)
    assert set(_cells_started(folder)) == started  # nothing started after the stop
    assert len(started) < 4
    finished_before = {c for c in started if json.loads((folder / c / "status.json").read_text())
                       .get("state") == "finished"}
    assert rumpy_main(["sweep", str(path), "--no-table"]) == 0
    for name in finished_before:
        assert starts(folder / name) == 1
    cells = json.loads((folder / "sweep.json").read_text())["cells"]
    assert all(json.loads((folder / c["name"] / "status.json").read_text())["state"] == "finished"
               for c in cells)
