"""One typed config object per TOML section. Field metadata drives validation (`load.py`) and is
checked against the TOML reference in docs/config.md by the tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def opt(default: Any, doc: str, *, choices: tuple = (), minimum: float | None = None,
        path: bool = False, action: bool = False, check: Any = None) -> Any:
    """A config field: its default, one line of documentation and the checks on its value.
    `action` keys say what to do with a run (continue, fork) rather than define it: they are
    left out of the saved config.toml and of config comparisons."""
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "path": path, "action": action,
            "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _epoch_choice(value: Any) -> str | None:
    if isinstance(value, int) and value < 1:
        return f"expected an epoch >= 1, 'last' or 'best', got {value!r}"
    if isinstance(value, str) and value not in ("last", "best"):
        return f"expected an epoch number, 'last' or 'best', got {value!r}"
    return None


@dataclass
class TrainingConfig:
    num_epochs: int = opt(100, "epochs to train", minimum=1)
    seed: int = opt(8, "seed of every random generator (weights, data order, crops)", minimum=0)
    gpu: str = opt("single", "'off' = CPU, 'single' = cuda:<sp_gpu>, 'multiple' = all GPUs",
                   choices=("off", "single", "multiple"))
    sp_gpu: int = opt(0, "CUDA device index used by gpu = 'single'", minimum=0)
    metrics: list[str] = opt(["PSNR", "SSIM"], "validation metrics: any of PSNR, SSIM, LPIPS")
    eval_frequency: int = opt(1, "validate every N epochs (and always at the last epoch)", minimum=1)
    logging: str = opt("visual", "'visual' writes PNG plots each epoch, 'text' only CSV and log",
                       choices=("visual", "text"))
    save_samples: bool = opt(True, "save SR-vs-HR sample images at each validation")
    num_samples: int = opt(3, "eval images saved as samples per validation", minimum=0)
    metric_channel: str = opt("y", "PSNR/SSIM on the BT.601 luma channel ('y') or on 'rgb'",
                              choices=("y", "rgb"))
    metric_crop_border: bool = opt(True, "crop `scale` pixels from each border before PSNR/SSIM")
    amp: bool = opt(False, "mixed precision (float16 autocast + GradScaler); CUDA only")
    deterministic: bool = opt(False, "deterministic cuDNN/CUDA kernels (CPU is always deterministic)")

    # The result tree: continue a node, or fork a branch from one of its saved epochs.
    continue_from_epoch: int | str | None = opt(
        None, "continue from epoch N, 'last' or 'best' of the node at branch_root", action=True,
        check=_epoch_choice)
    branch_root: str = opt("", "node to start from: '' = the run itself, 'lr_half/warm' = a branch",
                           action=True)
    new_branch: bool = opt(False, "fork a new branch at continue_from_epoch", action=True)
    new_branch_name: str = opt("", "name of the new branch (default branch_epoch_<N>)", action=True)
    overwrite_data: bool = opt(False, "allow removing data: a node's epochs after the one continued "
                                      "from, or a whole existing run when starting fresh", action=True)
    skip_optimizer_load: bool = opt(False, "a new branch starts with a fresh optimizer", action=True)
    skip_scheduler_load: bool = opt(False, "a new branch starts its scheduler from step 0",
                                    action=True)
    best_load_metric: str = opt("val-PSNR", "summary column that defines the 'best' epoch")
    early_stopping_patience: int = opt(0, "stop after this many validations without improvement; "
                                          "0 = off", minimum=0)
    early_stopping_metric: str = opt("val-PSNR", "summary column early stopping watches")
    early_stopping_mode: str = opt("auto", "'max', 'min', or 'auto' (from the metric)",
                                   choices=("auto", "max", "min"))
    early_stopping_min_delta: float = opt(0.0, "smallest change that counts as an improvement",
                                          minimum=0)
    early_stopping_reset_on_branch: bool = opt(
        True, "a branch restarts the patience counter (keeping the best value so far)")
    aim_track: bool = opt(True, "track the run in Aim (aim up shows it); failures only warn")
    aim_home: str = opt("", "folder of the Aim repository (.aim); default: experiment_save_loc",
                        path=True)
    keep_every_n_epochs: int = opt(1, "checkpoint retention: 1 = keep all; N = keep every N-th; "
                                      "0 = only best/last (fork points are always kept)", minimum=0)


@dataclass
class InternalParams:
    scale: int = opt(4, "upscaling factor", minimum=2)
    lr: float = opt(1e-4, "learning rate", minimum=0)
    optimizer: str = opt("adam", "adam, adamw, sgd or rmsprop")
    optimizer_params: dict = opt({}, "keyword arguments of the torch.optim class (betas, weight_decay, ...)")
    scheduler: str = opt("none", "cosine_annealing_warm_restarts, cosine, multi_step_lr, step_lr, "
                                 "one_cycle_lr or none")
    scheduler_params: dict = opt({}, "keyword arguments of the torch.optim.lr_scheduler class")
    loss: str = opt("l1", "l1, mse or charbonnier")
    grad_clip: float = opt(0.0, "clip the gradient norm to this value; 0 = off", minimum=0)
    # The architecture's own parameters (num_features, num_blocks, ...), checked against the
    # registered model's constructor; in the TOML they sit beside the keys above.
    arch: dict = field(default_factory=dict, metadata={"internal": True})


@dataclass
class ModelConfig:
    name: str = opt("", "registered model name: srcnn, vdsr, edsr, rcan, safmn")
    internal_params: InternalParams = field(default_factory=InternalParams)


@dataclass
class DatasetConfig:
    name: str = opt("", "standard set name (DIV2K, Flickr2K, Set5, Set14, BSDS100, Urban100, "
                        "Manga109, quickstart) or any label; default: the section name")
    type: str = opt("paired", "dataset kind (registered): 'paired' LR/HR folders")
    lr: str = opt("", "folder of low-resolution images", path=True)
    hr: str = opt("", "folder of high-resolution images", path=True)
    cutoff: int = opt(0, "use only the first N images (sorted by name); 0 = all", minimum=0)


@dataclass
class TrainingSetConfig(DatasetConfig):
    crop: int = opt(48, "LR patch size in pixels (the HR patch is crop * scale); 0 = whole image",
                    minimum=0)
    random_augment: bool = opt(True, "random flips and 90-degree rotations")
    repeat: int = opt(1, "times each image is visited per epoch (for small sets)", minimum=1)


@dataclass
class EvalSetConfig(DatasetConfig):
    crop: int = opt(0, "centre LR crop in pixels to speed up validation; 0 = full images",
                    minimum=0)
    random_augment: bool = opt(False, "must stay false: validation is deterministic")


@dataclass
class DataConfig:
    batch_size: int = opt(16, "training batch size", minimum=1)
    eval_batch_size: int = opt(1, "validation batch size (only equal-sized images share a batch)",
                               minimum=1)
    dataloader_threads: int = opt(2, "DataLoader worker processes; 0 = load in the main process",
                                  minimum=0)
    cache: str = opt("auto", "decoded-image cache: 'memory', 'disk' (memory-mapped arrays), "
                             "'off', or 'auto' (memory up to cache_memory_limit_gb, else disk)",
                     choices=("auto", "memory", "disk", "off"))
    cache_memory_limit_gb: float = opt(4.0, "largest decoded size 'auto' keeps in memory", minimum=0)
    cache_dir: str = opt("~/.cache/rumpy", "where disk caches and built-in datasets live", path=True)
    training_sets: dict[str, TrainingSetConfig] = field(default_factory=dict)
    eval_sets: dict[str, EvalSetConfig] = field(default_factory=dict)


@dataclass
class RunConfig:
    experiment: str = opt("", "run name; the run folder is <experiment_save_loc>/<experiment>")
    experiment_save_loc: str = opt("./Results", "folder holding run folders", path=True)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # The TOML this config came from (not itself a key).
    source: str = field(default="", metadata={"internal": True})

    @property
    def scale(self) -> int:
        return self.model.internal_params.scale
