"""One typed config object per TOML section. Field metadata drives validation (`load.py`) and is
checked against the TOML reference in docs/config.md by the tests.

A key that only some tasks use is marked `per_task=True`: each task that uses it declares its
default (`Task.config_defaults`, in the task's own file); setting it under any other task is a
config error, and it is left out of that task's resolved config. The config layer never imports a
task: the loader is handed the task's declarations (rumpy/catalog.py). Data set tables have one
config class per dataset kind (`data/kinds.py`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def opt(default: Any, doc: str, *, choices: tuple = (), minimum: float | None = None,
        maximum: float | None = None, path: bool = False, action: bool = False,
        check: Any = None, per_task: bool = False, needs: str | None = None) -> Any:
    """A config field: its default, one line of documentation and the checks on its value.
    `action` keys say what to do with a run (continue, fork) rather than define it: they are
    left out of the saved config.toml and of config comparisons. `per_task`: only tasks that
    declare a default for the key use it (the field's own default is then None: unset). `needs`
    names the key without which this one would be silently ignored (set alone: refused)."""
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum, "path": path,
            "action": action, "check": check, "per_task": per_task, "needs": needs}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _epoch_choice(value: Any) -> str | None:
    if isinstance(value, int) and value < 1:
        return f"expected an epoch >= 1, 'last' or 'best', got {value!r}"
    if isinstance(value, str) and value not in ("last", "best"):
        return f"expected an epoch number, 'last' or 'best', got {value!r}"
    return None


def _cutoff_check(value: Any) -> str | None:
    if isinstance(value, int) and value < 0:
        return f"expected an integer >= 0 or [start, end], got {value!r}"
    if isinstance(value, list) and not (len(value) == 2 and 0 <= value[0] < value[1]):
        return f"expected [start, end] with 0 <= start < end, got {value!r}"
    return None


# torch.compile modes; `compile = true` is "default".
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _compile_check(value: Any) -> str | None:
    if isinstance(value, bool) or value in COMPILE_MODES:
        return None
    return f"expected true, false or a mode ({', '.join(COMPILE_MODES)}), got {value!r}"


@dataclass
class TrainingConfig:
    num_epochs: int = opt(100, "epochs to train", minimum=1, maximum=10**6)
    # A step-based run (docs/config.md "Step-based runs"): its length, validation period and
    # checkpoint/output periods in optimizer steps; each period is one of the node's "epochs".
    num_iterations: int = opt(0, "train this many optimizer steps instead of num_epochs data "
                                 "passes (one of the two); 0 = epochs", minimum=0,
                              maximum=10**9)
    eval_every_n_steps: int = opt(0, "with num_iterations: validate (a summary row, a "
                                     "checkpoint) every N optimizer steps; N divides "
                                     "num_iterations", minimum=0)
    save_checkpoint_every_n_steps: int = opt(0, "with num_iterations: a full checkpoint every N "
                                                "steps (a multiple of eval_every_n_steps); 0 = "
                                                "at every validation", minimum=0)
    write_output_every_n_steps: int = opt(0, "with num_iterations: sample images and plots "
                                             "every N steps (a multiple of eval_every_n_steps); "
                                             "0 = at every validation", minimum=0)
    seed: int = opt(8, "seed of every random generator (weights, data order, crops)", minimum=0,
                    maximum=2**32 - 1)
    gpu: str = opt("single", "'off' = CPU, 'single' = cuda:<sp_gpu>, 'multiple' = all GPUs",
                   choices=("off", "single", "multiple"))
    sp_gpu: int = opt(0, "CUDA device index used by gpu = 'single'", minimum=0)
    metrics: list[str] | None = opt(None, "validation metrics of the task (`rumpy tasks` lists them)",
                                    per_task=True)
    eval_frequency: int = opt(1, "validate every N epochs (and always at the last epoch)", minimum=1)
    logging: str = opt("visual", "'visual' writes PNG plots each epoch, 'text' only CSV and log",
                       choices=("visual", "text"))
    save_samples: bool = opt(True, "save visual outputs at each validation: SR-vs-HR sample "
                                   "images (sisr), predicted-vs-true scatter plots (regression)")
    num_samples: int | None = opt(None, "eval images saved as samples per validation",
                                  minimum=0, per_task=True)
    metric_channel: str | None = opt(None, "PSNR/SSIM on the BT.601 luma channel ('y') or on 'rgb'",
                                     choices=("y", "rgb"), per_task=True)
    metric_crop_border: bool | None = opt(None, "crop `scale` pixels from each border before "
                                                "PSNR/SSIM", per_task=True)
    metric_grey: str | None = opt(None, "with metric_channel = 'y', a greyscale image (its HR's "
                                        "channels equal) is scored on its own grey values "
                                        "('own', the SR papers' MATLAB protocol) or on the luma "
                                        "of its RGB expansion ('luma', as BasicSR)",
                                  choices=("own", "luma"), per_task=True)
    stop_on_divergence: bool = opt(True, "a non-finite training loss stops the run (state "
                                         "'diverged'; the last good checkpoint is kept)")
    log_grad: bool = opt(False, "the gradient norm's mean and max over each epoch's steps as "
                                "summary columns (grad-norm-mean, grad-norm-max)")
    accumulate_grad_batches: int = opt(1, "k batches per optimizer step: their losses are "
                                          "averaged, so the step is that of a k-times larger "
                                          "batch (BatchNorm statistics excepted)", minimum=1)
    warmup_steps: int = opt(0, "the first N optimizer steps scale the scheduled learning rate "
                               "from 1/N up to 1; 0 = off", minimum=0)
    warmup: str = opt("linear", "warmup's shape: 'linear' or 'cosine' (a half cosine)",
                      choices=("linear", "cosine"))
    log_every_n_steps: int = opt(0, "every N optimizer steps a row of result_outputs/steps.csv "
                                    "(loss and its terms, learning rate, gradient norm with "
                                    "log_grad, step and data-wait time; means over the N steps) "
                                    "and the trackers' step curves; 0 = off", minimum=0)
    # Development modes (--dev, --overfit set them).
    limit_train_batches: int = opt(0, "train at most N batches per epoch; 0 = all", minimum=0)
    limit_eval_batches: int = opt(0, "validate on the first N batches of each eval set; 0 = all",
                                  minimum=0)
    detect_anomaly: bool = opt(False, "torch.autograd anomaly detection (slow: finds the op "
                                      "that made a NaN)")
    overfit: bool = opt(False, "train and validate on one fixed training batch (a loss and "
                               "metrics that cannot approach perfect there point to a bug)")
    sync_bn: bool = opt(False, "data parallel: BatchNorm layers become SyncBatchNorm")
    amp: bool = opt(False, "the older spelling of precision = 'fp16'")
    deterministic: bool = opt(False, "deterministic cuDNN/CUDA kernels (CPU is always deterministic)")
    precision: str = opt("fp32", "training arithmetic: 'fp32', 'bf16' (autocast) or 'fp16' "
                                 "(autocast + GradScaler; amp = true means this)",
                         choices=("fp32", "bf16", "fp16"))
    tf32: bool = opt(False, "CUDA: float32 matmuls and convolutions on TF32 tensor cores")
    channels_last: bool = opt(False, "model and image batches in channels-last (NHWC) memory")
    compile: bool | str = opt(False, "torch.compile the training model: true (= 'default') or a "
                                     "mode; a model that cannot compile trains eagerly",
                              check=_compile_check)
    cudnn_benchmark: bool = opt(True, "CUDA: cuDNN picks the fastest kernels per shape "
                                      "(off under deterministic)")

    # The result tree: continue a node, or fork a branch from one of its saved epochs.
    continue_from_epoch: int | str | None = opt(
        None, "continue from epoch N, 'last' or 'best' of the node at branch_root", action=True,
        check=_epoch_choice)
    continue_from_step: int | None = opt(
        None, "a step-based run: continue from the checkpoint of step N (a multiple of "
              "eval_every_n_steps); sets continue_from_epoch", action=True, minimum=1)
    branch_root: str = opt("", "node to start from: '' = the run itself, 'lr_half/warm' = a branch",
                           action=True, needs="continue_from_epoch")
    new_branch: bool = opt(False, "fork a new branch at continue_from_epoch", action=True,
                           needs="continue_from_epoch")
    new_branch_name: str = opt("", "name of the new branch (default branch_epoch_<N>, or branch_step_<N> in a step-based run)", action=True,
                               needs="new_branch")
    overwrite_data: bool = opt(False, "allow removing data: a node's epochs after the one continued "
                                      "from, or a whole existing run when starting fresh", action=True)
    skip_optimizer_load: bool = opt(False, "a new branch starts with a fresh optimizer", action=True,
                                    needs="new_branch")
    skip_scheduler_load: bool = opt(False, "a new branch starts its scheduler from step 0",
                                    action=True, needs="new_branch")
    new_params_override_load: bool | None = opt(
        None, "continuing with model settings that differ from the node's config.toml: unset = "
              "an error; true = the file's settings win, in a new branch; false = the node's "
              "own settings win (the original tool's key)", action=True)
    best_load_metric: str | None = opt(
        None, "summary column that defines the 'best' epoch ('PSNR' means val-PSNR)",
        per_task=True)
    early_stopping_patience: int = opt(0, "stop after this many validations without improvement; "
                                          "0 = off", minimum=0)
    early_stopping_metric: str | None = opt(
        None, "summary column early stopping watches",
        per_task=True)
    early_stopping_mode: str = opt("auto", "'max', 'min', or 'auto' (the metric's own direction)",
                                   choices=("auto", "max", "min"))
    early_stopping_min_delta: float = opt(0.0, "smallest change that counts as an improvement",
                                          minimum=0)
    early_stopping_reset_on_branch: bool = opt(
        True, "a branch restarts the patience counter (keeping the best value so far)")
    trackers: list[str] = opt(["aim"], "experiment trackers: 'aim', 'tensorboard', 'mlflow' "
                                       "(failures only warn)")
    mlflow_uri: str = opt("", "MLflow tracking URI (a server, a database, a folder); default: "
                              "sqlite:///<experiment_save_loc>/mlflow.db")
    aim_track: bool = opt(True, "false turns Aim off even when it is in `trackers`")
    aim_home: str = opt("", "folder of the Aim repository (.aim); default: experiment_save_loc",
                        path=True)
    # Checkpoint policies (docs/result_tree.md "Checkpoints and disk use").
    save_checkpoint_frequency: int = opt(1, "a full checkpoint epoch_N.pt every N epochs (and at "
                                            "the last); last.pt always holds the newest epoch",
                                         minimum=1)
    keep_every_n_epochs: int = opt(10, "retention: keep every N-th epoch checkpoint; 1 = keep all; "
                                       "0 = none but the protected ones (best, newest, fork "
                                       "points, the keep_last_n newest)", minimum=0)
    keep_last_n: int = opt(3, "retention also keeps the N newest epoch checkpoints", minimum=0)
    save_best_cooldown: int = opt(0, "best.pt is replaced at most once per N epochs; 0 = at every "
                                     "new best", minimum=0)
    weights_snapshots: bool = opt(False, "epochs without a full checkpoint save their weights "
                                         "(weights_N.pt); a fork from one starts a fresh optimizer")
    write_output_nth_epoch: int = opt(1, "sample images, scatter plots and summary plots every N "
                                         "validated epochs (and at the last)", minimum=1)
    output_interval_s: float = opt(30.0, "and at most every this many seconds of training (and "
                                         "at the end), so short epochs do not spend their CPU on "
                                         "images; 0 = at every such epoch", minimum=0)
    init_weights_path: str = opt("", "start a new run from these weights: a node folder (its "
                                     "init_weights_epoch) or a .pt file; fresh optimizer",
                                 path=True)
    init_weights_epoch: int | str = opt("best", "epoch of the node at init_weights_path: N, "
                                                "'last' or 'best'", check=_epoch_choice)
    init_weights_strict: bool = opt(True, "every weight must match the model (false: load the "
                                          "matching ones and list the rest)")
    # EMA weights of the output network (BasicSR's ema_decay; docs/config.md "EMA weights").
    ema_decay: float = opt(0.0, "keep an exponential moving average of the output network's "
                                "weights with this decay (0.999 is usual); 0 = off",
                           minimum=0, maximum=0.999999)
    ema_start_step: int = opt(0, "the average copies the weights until this many optimizer "
                                 "steps, then averages", minimum=0)
    validate_ema: str = opt("ema", "with ema_decay: validate (and choose best/early-stop by) the "
                                   "'ema' weights, the 'raw' ones, or 'both' (the raw scores as "
                                   "val-raw-* columns; best follows the EMA's)",
                            choices=("ema", "raw", "both"), needs="ema_decay")


@dataclass
class InternalParams:
    scale: int | None = opt(None, "upscaling factor", minimum=2, per_task=True)
    lr: float = opt(1e-4, "learning rate", minimum=0)
    optimizer: str = opt("adam", "adam, adamw, sgd or rmsprop")
    optimizer_params: dict = opt({}, "keyword arguments of the torch.optim class (betas, weight_decay, ...)")
    scheduler: str = opt("none", "cosine_annealing_warm_restarts, cosine, multi_step_lr, step_lr, "
                                 "one_cycle_lr, reduce_on_plateau or none")
    scheduler_params: dict = opt({}, "keyword arguments of the torch.optim.lr_scheduler class")
    loss: str | dict | None = opt(
        None, "a loss name (l1, mse, charbonnier, huber, smooth_l1), or a table of weighted losses: "
              "{l1 = 1.0, charbonnier = {weight = 0.5, eps = 1e-6}}",
        per_task=True)
    grad_clip: float = opt(0.0, "clip the gradient norm to this value; 0 = off", minimum=0)
    # The architecture's own parameters (num_features, num_blocks, ...), checked against the
    # registered model's constructor; in the TOML they sit beside the keys above.
    arch: dict = field(default_factory=dict, metadata={"internal": True})


GAN_TYPES = ("vanilla", "lsgan", "hinge", "ragan")


@dataclass
class DiscriminatorConfig:
    """[model.discriminator]: a second network trained against the output one (adversarial
    SR); its architecture's own keys sit beside these, as in internal_params."""

    name: str = opt("", "registered discriminator (`rumpy models`: vgg_discriminator, "
                        "unet_discriminator)")
    gan_type: str = opt("vanilla", "adversarial loss: 'vanilla' (BCE), 'lsgan', 'hinge' or "
                                   "'ragan' (relativistic average, ESRGAN)", choices=GAN_TYPES)
    gan_weight: float = opt(0.005, "weight of the adversarial term in the generator's loss",
                            minimum=0)
    lr: float = opt(1e-4, "the discriminator's learning rate", minimum=0)
    optimizer: str = opt("adam", "adam, adamw, sgd or rmsprop")
    optimizer_params: dict = opt({}, "keyword arguments of the torch.optim class")
    scheduler: str = opt("none", "a per-epoch or per-batch scheduler (as internal_params."
                                 "scheduler; reduce_on_plateau is not available here)")
    scheduler_params: dict = opt({}, "keyword arguments of the scheduler")
    grad_clip: float = opt(0.0, "clip the discriminator's gradient norm; 0 = off", minimum=0)
    generator_every: int = opt(1, "the generator steps every N iterations, the discriminator "
                                  "every one (BasicSR's net_d_iters)", minimum=1)
    generator_start_step: int = opt(0, "the generator steps only after N iterations, the "
                                       "discriminator learning alone first (BasicSR's "
                                       "net_d_init_iters)", minimum=0)
    arch: dict = field(default_factory=dict, metadata={"internal": True})


@dataclass
class ModelConfig:
    name: str = opt("", "registered model name (`rumpy models` lists them)")
    internal_params: InternalParams = field(default_factory=InternalParams)
    discriminator: DiscriminatorConfig | None = opt(
        None, "a discriminator trained against the model (adversarial SR; its keys below)",
        per_task=True)


@dataclass
class DatasetConfig:
    """Keys every data set table has; each dataset kind adds its own (data/kinds.py)."""

    name: str = opt("", "standard or built-in set name (DIV2K, Set5, quickstart, blur_regression, "
                        "...) or any label; default: the section name")
    type: str = opt("", "dataset kind (`rumpy tasks` lists them); default: the task's own")
    cutoff: int | list[int] = opt(0, "use only the first N images or samples (sorted by name), "
                                     "or [start, end]: those from index start up to end "
                                     "(exclusive); 0 = all", check=_cutoff_check)
    test_indices: list[int] = opt([], "training sets: these samples (0-based, after cutoff) are "
                                      "held out of training and validated as the eval set "
                                      "<name>_test")

    def selected(self, items: list) -> list:
        """The items `cutoff` keeps."""
        if isinstance(self.cutoff, list):
            return items[self.cutoff[0]: self.cutoff[1]]
        return items[: self.cutoff] if self.cutoff else items


@dataclass
class DataConfig:
    batch_size: int = opt(16, "training batch size", minimum=1)
    eval_batch_size: int = opt(1, "validation batch size (only equal-sized images share a batch)",
                               minimum=1)
    dataloader_threads: int = opt(2, "DataLoader worker processes; 0 = load in the main process",
                                  minimum=0, maximum=256)
    drop_last_training_batch: bool = opt(True, "an epoch's last, incomplete training batch is "
                                              "dropped (every step sees batch_size samples)")
    cache: str = opt("auto", "decoded-image cache: 'memory', 'disk' (memory-mapped arrays), "
                             "'off', or 'auto' (memory up to cache_memory_limit_gb, else disk)",
                     choices=("auto", "memory", "disk", "off"))
    cache_memory_limit_gb: float = opt(4.0, "largest decoded size 'auto' keeps in memory", minimum=0)
    cache_dir: str = opt("~/.cache/rumpy", "where disk caches and built-in datasets live", path=True)
    normalize_inputs: bool | None = opt(None, "z-score the inputs with training-set statistics "
                                              "(kept in the checkpoint)", per_task=True)
    normalize_targets: bool | None = opt(None, "z-score the targets with training-set statistics",
                                         per_task=True)
    loss_space: str | None = opt(None, "compute the loss on 'normalized' or 'original' targets "
                                       "(metrics are always in original units)",
                                 choices=("normalized", "original"), per_task=True)
    # Tables of data sets; their classes come from each table's `type` (data/kinds.py).
    training_sets: dict[str, DatasetConfig] = field(default_factory=dict,
                                                    metadata={"role": "train"})
    eval_sets: dict[str, DatasetConfig] = field(default_factory=dict, metadata={"role": "eval"})


@dataclass
class RunConfig:
    experiment: str = opt("", "run name; the run folder is <experiment_save_loc>/<experiment>")
    experiment_save_loc: str = opt("./Results", "folder holding run folders", path=True)
    task: str = opt("sisr", "what is trained: 'sisr' (super-resolution), 'regression', or a "
                            "plugin's task (`rumpy tasks` lists them)")
    plugins: list[str] = opt([], "code that registers models, losses, metrics, dataset kinds, "
                                 "degradations, trackers or tasks: Python files (relative to "
                                 "the TOML) or importable module names; the node records each "
                                 "file's sha256 (docs/design.md, Plugins)")
    training: TrainingConfig = field(default_factory=TrainingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # The TOML this config came from, and every file and override composed into it (not keys).
    source: str = field(default="", metadata={"internal": True})
    chain: list = field(default_factory=list, metadata={"internal": True})
    origins: dict = field(default_factory=dict, metadata={"internal": True})  # key -> its source
    plugin_sha256: dict = field(default_factory=dict, metadata={"internal": True})  # file -> hash
    sweep: dict = field(default_factory=dict, metadata={"internal": True})  # a sweep cell's name,
                                                                            # values and seed

    @property
    def scale(self) -> int | None:
        return self.model.internal_params.scale
