"""Sweeps: a grid of settings x seeds as ordinary run folders (spec.py), run and resumed by any
number of workers (run.py, each cell from whatever state it is in: cell.py), launched locally or
on a cluster (launch.py); or an Optuna search over the result tree (search_spec.py, study.py,
trial.py, pruning.py, search_run.py). `rumpy table` on either (table.py, search_table.py)."""
