"""A search with pruning against the full grid it searches: how many training epochs each needs
to reach its best value, in one run.

Run: .venv/bin/python benchmarks/search.py [--epochs 6] [--trials 8] [--keep DIR]
The grid trains every setting of lr x num_blocks (one seed) for --epochs epochs; the search
(TPE, median pruning) runs --trials trials over the same choices, one at a time. Epochs are
counted from the nodes' summary.csv. Printed: each one's best value, the epochs the search had
trained when its best trial ended, the grid's total, and their ratio. A CPU-sized EDSR on the
quickstart set (built by rumpy.data.builtin)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
experiment = "{name}"
experiment_save_loc = "{tmp}/Results"
[training]
gpu = "off"
num_epochs = {epochs}
seed = 8
metrics = ["PSNR"]
logging = "text"
save_samples = false
aim_track = false
keep_every_n_epochs = 0
keep_last_n = 1
[model]
name = "edsr"
[model.internal_params]
scale = 2
lr = 1e-3
num_features = 16
num_blocks = 2
[data]
batch_size = 16
eval_batch_size = 1
dataloader_threads = 0
cache = "memory"
[data.training_sets.quickstart]
crop = 32
repeat = {repeat}
[data.eval_sets.quickstart]
[sweep]
seeds = [8]
"""
LRS = [1e-4, 3e-4, 1e-3, 3e-3]
BLOCKS = [1, 2]
GRID = f'grid = {{ "model.internal_params.lr" = {LRS}, "model.internal_params.num_blocks" = ' \
       f'{BLOCKS} }}\n'
SEARCH = """[sweep.search]
n_trials = {trials}
metric = "val-PSNR"
sampler = {{ name = "tpe", seed = 0, n_startup_trials = 3 }}
pruner = {{ name = "median", n_startup_trials = 2, n_warmup_steps = 1 }}
[sweep.search.space]
"model.internal_params.lr" = {{ choices = {lrs} }}
"model.internal_params.num_blocks" = {{ choices = {blocks} }}
"""


def node_values(node: Path) -> list[float]:
    import csv

    with open(node / "result_outputs" / "summary.csv", newline="") as f:
        return [float(r["val-PSNR"]) for r in csv.DictReader(f) if r.get("val-PSNR")]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=16)
    parser.add_argument("--keep", help="keep the runs in this folder")
    args = parser.parse_args()
    from rumpy.cli.main import main as rumpy_main

    tmp = Path(args.keep or tempfile.mkdtemp(prefix="rumpy-search-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    common = dict(tmp=tmp, epochs=args.epochs, repeat=args.repeat)
    grid = tmp / "grid.toml"
    grid.write_text(CONFIG.format(name="grid", **common) + GRID)
    search = tmp / "search.toml"
    search.write_text(CONFIG.format(name="search", **common) + SEARCH.format(
        trials=args.trials, lrs=LRS, blocks=BLOCKS))
    start = time.perf_counter()
    assert rumpy_main(["sweep", str(grid), "--no-table"]) == 0
    grid_s = time.perf_counter() - start
    start = time.perf_counter()
    assert rumpy_main(["sweep", str(search), "--no-table"]) == 0
    search_s = time.perf_counter() - start

    cells = json.loads((tmp / "Results" / "grid" / "sweep.json").read_text())["cells"]
    grid_runs = {c["name"]: node_values(tmp / "Results" / "grid" / c["name"]) for c in cells}
    grid_epochs = sum(len(v) for v in grid_runs.values())
    grid_best_cell = max(grid_runs, key=lambda n: max(grid_runs[n]))
    grid_best = max(grid_runs[grid_best_cell])

    import optuna
    from rumpy.sweep.study import load_study

    study = load_study(tmp / "Results" / "search", "search")
    trials = study.get_trials()
    spent, to_best, best = 0, 0, None
    for t in trials:  # one worker: trial order is training order
        spent += len(node_values(tmp / "Results" / "search" / f"trial={t.number},seed=8"))
        if t.state == optuna.trial.TrialState.COMPLETE and (best is None or t.value > best):
            best, to_best = t.value, spent
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    print(f"load average: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    print(f"grid:   {len(cells)} settings x {args.epochs} epochs = {grid_epochs} epochs, best "
          f"val-PSNR {grid_best:.4f} ({grid_best_cell}), {grid_s:.0f} s")
    print(f"search: {len(trials)} trials ({pruned} pruned), {spent} epochs, best val-PSNR "
          f"{best:.4f} (trial {study.best_trial.number}: {study.best_trial.params}), "
          f"{search_s:.0f} s")
    print(f"epochs to the search's best: {to_best} of the grid's {grid_epochs}: "
          f"ratio {to_best / grid_epochs:.2f}; the search's best is "
          f"{'the grid best' if abs(best - grid_best) < 1e-9 else f'{best - grid_best:+.4f} dB from the grid best'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
