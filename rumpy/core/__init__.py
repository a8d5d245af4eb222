"""What a run is on disk and in a checkpoint, below the tree, the tasks, training and the
readers that all use it: checkpoints, the run folder and its declared names, summary columns
and their directions, monitors (best, early stopping), losses, optimizers and schedulers, and
the data-parallel helpers."""
