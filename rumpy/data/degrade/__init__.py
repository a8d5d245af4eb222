"""Degradation pipelines (`rumpy degrade`): registered operations (blur.py, resample.py,
noise.py, compress.py), the original tool's pipeline TOML (config.py), the seeded run over a
folder with its metadata CSV (run.py), and the blur kernels' PCA (kernel_pca.py)."""
from .config import Pipeline, Step, read_pipeline
from .registry import DEGRADATIONS
from .kernel_pca import PCA_FILE, KernelPCA
from .run import CONFIG_FILE, METADATA_FILE, fit_folder, reapply, run

__all__ = ["CONFIG_FILE", "DEGRADATIONS", "METADATA_FILE", "PCA_FILE", "KernelPCA", "Pipeline",
           "Step", "fit_folder", "read_pipeline", "reapply", "run"]
