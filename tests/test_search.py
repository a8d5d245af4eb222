"""Searches: an Optuna study over the result tree. Trials are ordinary nodes; a search killed
with SIGKILL resumes with no trial lost or trained twice; pruning is a node state; a promoted
trial continues exactly; `rumpy table` agrees with the journal that Optuna opens as it is."""
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

from conftest import no_timing, rows, same_weights, weights
from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.config import ConfigError
from rumpy.sweep.spec import read_sweep

optuna = pytest.importorskip("optuna")

# TPE's seed 10 draws lr 1e-3, 3e-3, then 1e-7 for trials 0, 1, 2 (its startup trials are
# random draws, one independent stream per trial number, whichever worker asks): trial 2 has
# a bad lr and at least one of trials 0 and 1 is complete when it reports its first epoch (a
# worker asks for trial 2 only after it finished one), so the median pruner stops it there.
SEARCH = """
[sweep]
seeds = [1]
[sweep.search]
n_trials = 6
metric = "val-PSNR"
sampler = { name = "tpe", seed = 10, n_startup_trials = 3 }
pruner = { name = "median", n_startup_trials = 1 }
[sweep.search.space]
"model.internal_params.lr" = { choices = [3e-3, 1e-3, 1e-7] }
"""


def search_file(write_config, text: str = SEARCH, num_epochs: int = 3, name="cfg.toml") -> Path:
    path = write_config(name=name, num_epochs=num_epochs, experiment="sw",
                        extra_training='logging = "text"\nsave_samples = false')
    path.write_text(path.read_text() + text)
    return path


def starts(node: Path) -> int:
    log = node / "train.log"
    return sum(1 for line in log.read_text().splitlines()
               if "training edsr" in line) if log.is_file() else 0


def status(node: Path) -> dict:
    path = node / "status.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def trial_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("trial=*") if p.is_dir())


@pytest.mark.slow
def test_search_killed_resumed_pruned_promoted(write_config, tmp_path, caplog):
    path = search_file(write_config)
    folder = tmp_path / "Results" / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "rumpy.cli.main", "sweep", str(path),
                             "--workers", "2", "--no-table"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # SIGKILL (the whole process group) once a trial has saved epoch 1 of 3: mid-trial
    deadline = time.time() + 240
    while time.time() < deadline and not list(folder.glob("trial=*/saved_models/epoch_1.pt")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = [p.name for p in trial_folders(folder)
              if status(p).get("state") not in ("finished", "pruned")]
    assert killed, "the kill came after every started trial had ended"
    # a killed node with a saved epoch continues in place (train.log gets a second start); one
    # killed during its start-up is started again in a fresh folder (one start)
    continued = {n for n in killed if list((folder / n / "saved_models").glob("epoch_*.pt"))}
    # --status says what is true: the killed trials are stopped (nothing runs them), not running
    from rumpy.sweep.run import status_lines
    from rumpy.sweep.spec import read_sweep
    lines = status_lines(read_sweep(path))
    assert not any(line.endswith(": running") for line in lines), lines
    assert any(": stopped" in line for line in lines), lines

    assert rumpy_main(["sweep", str(path), "--workers", "2"]) == 0
    study = optuna.load_study(study_name="sw", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))))
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))  # none lost, none extra
    states = {t.number: t.state.name for t in trials}
    assert set(states.values()) <= {"COMPLETE", "PRUNED"}
    assert states[2] == "PRUNED" and trials[2].params["model.internal_params.lr"] == 1e-7
    for t in trials:
        node = folder / f"trial={t.number},seed=1"
        assert node.is_dir()
        assert status(node)["optuna_trial"] == t.number
        assert f"lr = {t.params['model.internal_params.lr']}" in (node / "config.toml").read_text()
        epochs = [int(r["epoch"]) for r in rows(node)]
        if t.state.name == "COMPLETE":
            assert status(node)["state"] == "finished" and epochs == [1, 2, 3]
        else:
            assert status(node)["state"] == "pruned" and epochs == list(range(1, len(epochs) + 1))
            assert len(epochs) < 3
        # trained once; a killed trial continued once in its own node
        assert starts(node) == (2 if node.name in continued else 1), node.name
    # the table and the journal agree, trial by trial
    table = pd.read_csv(folder / "sweep_table.csv")
    assert sorted(table["trial"]) == list(range(6))
    for t in trials:
        row = table[table["trial"] == t.number].iloc[0]
        assert row["state"] == t.state.name.lower()
        assert row["val-PSNR"] == pytest.approx(t.value, rel=1e-9)
    assert table.iloc[0]["best"] == "*" and table.iloc[0]["trial"] == study.best_trial.number
    assert (folder / "optimization_history.png").stat().st_size > 1000
    assert (folder / "param_importances.png").stat().st_size > 1000
    md = (folder / "sweep_table.md").read_text()
    assert f"Best: trial {study.best_trial.number}" in md
    capsys_tree = subprocess.run([sys.executable, "-m", "rumpy.cli.main", "tree",
                                  str(folder / "trial=2,seed=1")], capture_output=True, text=True)
    assert "[pruned]" in capsys_tree.stdout
    whole = subprocess.run([sys.executable, "-m", "rumpy.cli.main", "tree", str(folder)],
                           capture_output=True, text=True)  # the sweep folder: every trial
    assert whole.returncode == 0 and all(f"trial={n},seed=1  [" in whole.stdout
                                         for n in range(6)), whole.stdout + whole.stderr

    # promoting the pruned trial 2 to 3 epochs: a new trial, its node a branch of trial 2's,
    # equal to an uninterrupted 3-epoch run of the same settings
    assert rumpy_main(["sweep", str(path), "--promote", "2", "--num_epochs", "3",
                       "--no-table"]) == 0
    promoted = study.get_trials()[-1]
    assert promoted.number == 6 and promoted.state.name == "COMPLETE"
    assert promoted.user_attrs["promoted_from"] == 2 and promoted.params == trials[2].params
    branch = folder / "trial=2,seed=1" / "trial_6"
    assert status(branch)["state"] == "finished" and status(branch)["promoted_from"] == 2
    reference = write_config(name="ref.toml", num_epochs=3, experiment="ref",
                             extra_training='logging = "text"\nsave_samples = false')
    reference.write_text(reference.read_text().replace("seed = 3", "seed = 1")
                         .replace("lr = 1e-3", "lr = 1e-7"))
    assert train_main(["--parameters", str(reference)]) == 0
    ref = tmp_path / "Results" / "ref"
    drop = lambda rs: [{k: v for k, v in r.items() if k != "inherited"} for r in no_timing(rs)]
    assert drop(rows(branch)) == drop(rows(ref))
    assert same_weights(weights(branch, 3), weights(ref, 3))
    assert status(folder / "trial=2,seed=1")["state"] == "pruned"  # the parent is untouched
    lines = status_lines(read_sweep(path))
    assert lines[0].startswith("sweep sw: 6 of 6 trials + 1 promoted;"), lines
    assert "  trial 6: complete" in "\n".join(lines) and "(promoted from trial 2)" in lines[-1]
    # the search's table now lists the promoted trial too
    caplog.clear()
    assert rumpy_main(["table", str(folder)]) == 0
    table = pd.read_csv(folder / "sweep_table.csv")
    assert sorted(table["trial"]) == list(range(7))
    assert table[table["trial"] == 6].iloc[0]["val-PSNR"] == pytest.approx(promoted.value)


@pytest.mark.parametrize("search, message", [
    ('[sweep.search]\nn_trails = 4\n', "sweep.search.n_trails: unknown key; did you mean "
                                       "'n_trials'?"),
    ('[sweep.search]\nn_trials = 0\n', "sweep.search.n_trials: expected an integer"),
    ('[sweep.search]\nn_trials = 2\nsampler = "randm"\n[sweep.search.space]\n'
     '"model.internal_params.lr" = { low = 1e-4, high = 1e-2 }\n',
     "sweep.search.sampler.name: unknown sampler 'randm'; did you mean 'random'?"),
    ('[sweep.search]\nn_trials = 2\nsampler = { name = "tpe", sed = 1 }\n'
     '[sweep.search.space]\n"model.internal_params.lr" = { low = 1e-4, high = 1e-2 }\n',
     "sweep.search.sampler.sed: not a parameter of TPESampler; did you mean 'seed'?"),
    ('[sweep.search]\nn_trials = 2\npruner = { name = "median", n_warmup_step = 1 }\n'
     '[sweep.search.space]\n"model.internal_params.lr" = { low = 1e-4, high = 1e-2 }\n',
     "sweep.search.pruner.n_warmup_step: not a parameter of MedianPruner; did you mean "
     "'n_warmup_steps'?"),
    ('[sweep.search]\nn_trials = 2\nmetric = "val-PSNT"\n[sweep.search.space]\n'
     '"model.internal_params.lr" = { low = 1e-4, high = 1e-2 }\n',
     "sweep.search.metric: no summary column 'val-PSNT'; did you mean 'val-PSNR'?"),
    ('[sweep.search]\nn_trials = 2\n[sweep.search.space]\n'
     '"model.internal_params.lr" = { low = 1e-4, hihg = 1e-2 }\n',
     "sweep.search.space.model.internal_params.lr.hihg: unknown key; did you mean 'high'?"),
    ('[sweep.search]\nn_trials = 2\n[sweep.search.space]\n'
     '"model.internal_params.lr" = { low = 0.0, high = 1e-2, log = true }\n',
     "sweep.search.space.model.internal_params.lr.low: a log scale needs low > 0"),
    ('[sweep.search]\nn_trials = 2\n[sweep.search.space]\n'
     '"training.num_epochz" = { low = 1, high = 3 }\n',
     "sweep.search.space.training.num_epochz: 1: unknown key; did you mean 'num_epochs'?"),
    ('[sweep.search]\nn_trials = 2\nfrom = "nope@best"\n[sweep.search.space]\n'
     '"model.internal_params.lr" = { low = 1e-4, high = 1e-2 }\n',
     "sweep.search.from: .*nope is not a run folder"),
    ('[sweep]\ngrid = { "model.internal_params.lr" = [1e-3] }\n[sweep.search]\nn_trials = 2\n',
     "a sweep has a grid or a search, not both"),
])
def test_bad_searches_are_one_line_errors_before_anything_runs(write_config, tmp_path, search,
                                                               message):
    path = search_file(write_config, search if search.startswith("[sweep]") else
                       "[sweep]\nseeds = [1]\n" + search)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        read_sweep(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert rumpy_main(["sweep", str(path)]) == 2
    assert not (tmp_path / "Results").exists()


@pytest.mark.slow
def test_search_from_a_node_fine_tunes_its_weights(write_config, tmp_path):
    """`from = "NODE@EPOCH"`: every trial starts from that node's epoch (its lineage says so)."""
    base = write_config(name="base.toml", num_epochs=1, experiment="base",
                        extra_training='logging = "text"\nsave_samples = false')
    assert train_main(["--parameters", str(base)]) == 0
    path = search_file(write_config, "[sweep]\nseeds = [1]\n[sweep.search]\nn_trials = 1\n"
                       'from = "base@1"\nsampler = { name = "random", seed = 0 }\n'
                       '[sweep.search.space]\n"model.internal_params.lr" = '
                       '{ low = 1e-4, high = 1e-3, log = true }\n', num_epochs=1)
    assert rumpy_main(["sweep", str(path), "--no-table"]) == 0
    node = tmp_path / "Results" / "sw" / "trial=0,seed=1"
    lineage = json.loads((node / "lineage.json").read_text())["init_weights"]
    assert lineage["source"] == str((tmp_path / "Results" / "base").resolve())
    assert lineage["epoch"] == 1
    assert status(node)["state"] == "finished"


def test_a_search_runs_as_submitit_jobs_sharing_the_journal(write_config, tmp_path):
    """Cluster jobs (submitit's local executor stands in for Slurm: the same pickled worker)
    draw trials from one journal: every trial trains once, in its own node."""
    pytest.importorskip("submitit")
    path = search_file(write_config, SEARCH.replace("n_trials = 6", "n_trials = 3"),
                       num_epochs=1)
    assert rumpy_main(["sweep", str(path), "--launcher", "submitit-local", "--workers", "2",
                       "--no-table"]) == 0
    folder = tmp_path / "Results" / "sw"
    assert (folder / ".submitit").is_dir()
    study = optuna.load_study(study_name="sw", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))))
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    for t in trials:
        node = folder / f"trial={t.number},seed=1"
        assert starts(node) == 1 and status(node)["optuna_trial"] == t.number
