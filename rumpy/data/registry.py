from ..registry import Registry

# Training-dataset kinds by the `type` key of [data.training_sets.NAME].
DATASETS: Registry = Registry("dataset type")
# Data sets rumpy can build itself (no download) by the `name` key.
BUILTIN_SETS: Registry = Registry("built-in data set")
