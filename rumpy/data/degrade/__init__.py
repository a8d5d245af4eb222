"""Degradation pipelines (`rumpy degrade`): registered operations (blur.py, resample.py,
noise.py, compress.py), the original tool's pipeline TOML (config.py), and the seeded run over a
folder with its metadata CSV (run.py)."""
from .config import Pipeline, Step, read_pipeline
from .registry import DEGRADATIONS
from .run import CONFIG_FILE, METADATA_FILE, reapply, run

__all__ = ["CONFIG_FILE", "DEGRADATIONS", "METADATA_FILE", "Pipeline", "Step", "read_pipeline",
           "reapply", "run"]
