"""Sweeps: a grid of settings x seeds as ordinary run folders (spec.py), run and resumed by any
number of workers (run.py), launched locally or on a cluster (launch.py)."""
