"""Step-based runs: `training.num_iterations` optimizer steps, validated every
`eval_every_n_steps` (BasicSR's total_iter and val_freq). The result tree keeps its one unit: each
validation period of N steps is one of the node's "epochs" (a summary row carrying `step` and
`data-epoch`, a checkpoint epoch_K.pt, a fork point), and the training data streams across data
passes (data/loaders.EpochSampler.stream), so a period may end in the middle of a pass and a
continue or fork there replays the stream exactly. Resolved once, when the config is loaded:
everything after it counts periods."""
from __future__ import annotations

from .errors import ConfigError
from .schema import RunConfig

# step key -> the per-period key it sets (counted in validation periods)
STEP_KEYS = {"save_checkpoint_every_n_steps": "save_checkpoint_frequency",
             "write_output_every_n_steps": "write_output_nth_epoch"}
# epoch-counting keys a step-based run sets from its step keys, never from the file
EPOCH_KEYS = {"num_epochs": "num_iterations", "eval_frequency": "eval_every_n_steps",
              **{v: k for k, v in STEP_KEYS.items()}}


def step_based(training) -> bool:
    """A TrainingConfig, or a stored config's [training] table, of a step-based run."""
    value = training.get("num_iterations") if isinstance(training, dict) else \
        training.num_iterations
    return bool(value)


def period_steps(training: dict) -> int:
    """Optimizer steps per validation period of a stored config's [training] table (1 for an
    epoch-based run, whose rows are not counted in steps)."""
    return int(training.get("eval_every_n_steps") or 1) if step_based(training) else 1


def target_epochs(training: dict) -> int | None:
    """The number of periods (epochs) a stored config's [training] table trains to."""
    try:
        if step_based(training):
            return int(training["num_iterations"]) // period_steps(training)
        return int(training["num_epochs"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def where(training, epoch: int) -> str:
    """'epoch 3/10', or a step-based run's 'step 3000/10000' (its epoch 3 of 10 periods)."""
    if training.num_iterations:
        return f"step {epoch * training.eval_every_n_steps}/{training.num_iterations}"
    return f"epoch {epoch}/{training.num_epochs}"


def resolve_periods(cfg: RunConfig) -> None:
    """Checks the step keys and sets the epoch keys of a step-based run from them (num_epochs =
    periods, eval_frequency = 1, the checkpoint and output periods); continue_from_step becomes
    continue_from_epoch. Raises ConfigError naming the key."""
    t, origins, src = cfg.training, cfg.origins, cfg.source

    def error(key: str, message: str) -> ConfigError:
        return ConfigError(origins.get(f"training.{key}", src), f"training.{key}", message)

    if not t.num_iterations:
        for key in ("eval_every_n_steps", "continue_from_step", *STEP_KEYS):
            if getattr(t, key):
                raise error(key, "counts optimizer steps: only with training.num_iterations "
                                 "(the run's length in steps); num_epochs counts data passes")
        return
    if origins.get("training.num_epochs") == "--dev":  # --dev: 5 short periods
        t.eval_every_n_steps = min(t.eval_every_n_steps or 10, 10)
        t.num_iterations = 5 * t.eval_every_n_steps
        t.limit_train_batches = 0
        for key in STEP_KEYS:
            setattr(t, key, 0)
        origins = {k: v for k, v in origins.items() if v != "--dev"}
    def layer(key: str) -> float:  # the composition order: files < flags < overrides
        label = origins.get(f"training.{key}")
        if label in cfg.chain:
            return cfg.chain.index(label)
        files = [c for c in cfg.chain if not c.startswith(("override ", "sweep cell"))]
        return len(files) - 0.5  # a flag (--num_iterations): above the files, under overrides

    for key, step_key in EPOCH_KEYS.items():
        # an epoch key from a file this one is layered on (`defaults`) gives way to the steps
        if f"training.{key}" in origins and layer(key) >= layer("num_iterations"):
            raise error(key, f"a step-based run (num_iterations) sets it from {step_key}: "
                             f"give one of the two")
    every = t.eval_every_n_steps
    if not every:
        raise error("eval_every_n_steps", f"missing: a run of num_iterations = "
                                          f"{t.num_iterations} steps validates and saves every N "
                                          f"steps (N divides num_iterations, e.g. "
                                          f"{_divisor(t.num_iterations)})")
    if t.num_iterations % every:
        raise error("eval_every_n_steps", f"expected a divisor of num_iterations "
                                          f"({t.num_iterations}), got {every}")
    if t.limit_train_batches:
        raise error("limit_train_batches", "counts batches per epoch: a step-based run's "
                                           "length is num_iterations (lower it instead)")
    t.num_epochs = t.num_iterations // every
    t.eval_frequency = 1
    for key, target in STEP_KEYS.items():
        steps = getattr(t, key)
        if steps and steps % every:
            raise error(key, f"expected a multiple of eval_every_n_steps ({every}), got {steps}")
        setattr(t, target, max(steps // every, 1))
    if t.continue_from_step is not None:
        if t.continue_from_epoch is not None:
            raise error("continue_from_step", "give one of continue_from_step and "
                                              "continue_from_epoch")
        if t.continue_from_step % every:
            raise error("continue_from_step", f"expected a step where the run validated and "
                                              f"saved (a multiple of eval_every_n_steps = "
                                              f"{every}), got {t.continue_from_step}")
        t.continue_from_epoch = t.continue_from_step // every


def _divisor(n: int) -> int:
    """A round validation period for a run of n steps (about 20 validations)."""
    for every in (5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1):
        if n % every == 0 and n // every >= 10:
            return every
    return n
