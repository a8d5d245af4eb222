"""The Task: what is trained. A task owns its data kinds and their checks, how a named batch
becomes model input and target, the loss over a batch, evaluation (per-sample records and
whole-set aggregates), its baseline, its visual outputs and its state in the checkpoint. The
run management around it (plan, tree, loop, callbacks, checkpoints) never looks inside a batch."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn

from ..config import ConfigError, RunConfig
from ..core.errors import InferenceError  # noqa: F401  (tasks raise it; re-exported)
from ..data.loaders import Loaders
from ..metrics import METRICS, metric_names
from ..models import MODELS, check_model_params, model_params, model_tasks
from ..models.registry import TASK_INPUTS
from ..registry import Registry, did_you_mean
from ..core.declared import declare

TASKS: Registry[type["Task"]] = Registry("task")

IP = "model.internal_params"


@dataclass
class EvalResult:
    means: dict[str, dict[str, float]]             # set -> {'loss': .., 'PSNR': .., ...}
    per_sample: list[dict] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)   # set -> material for visuals
    examples: dict[str, list] = field(default_factory=dict)  # set -> the val_example_indices'
                                                             # outputs (sisr: Samples)


class Task:
    name: ClassVar[str]
    families: ClassVar[tuple[str, ...]] = ()  # shared registry scopes ("image": image to image)
    dataset_kinds: ClassVar[tuple[str, ...]]   # the first is the default `type`
    model_inputs: ClassVar[tuple[str, ...]]    # constructor arguments the task supplies
    baseline_name: ClassVar[str]               # 'bicubic', 'mean predictor'
    per_sample_file: ClassVar[str]             # result_outputs/<this>_epoch_<N>.csv
    # Defaults of the per_task config keys this task uses ("training.metrics": [...], ...);
    # a per_task key it does not list is refused in its configs (config/schema.py).
    config_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "model_inputs" in cls.__dict__:
            TASK_INPUTS[cls.name] = tuple(cls.model_inputs)
        if "per_sample_file" in cls.__dict__:  # the files it writes, declared to the tree
            declare("result_outputs", rf"{re.escape(cls.per_sample_file)}_epoch_\d+\.csv",
                    f"task {cls.__dict__.get('name', cls.__name__)}")

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.device = torch.device("cpu")
        from ..core.distributed import SINGLE
        self.dist = SINGLE  # data parallel: evaluation is sharded over the ranks and gathered
        self.loaders: Loaders | None = None

    @classmethod
    def scopes(cls) -> tuple[str, ...]:
        """Where this task looks up registered names: its own and its families'."""
        return (cls.name, *cls.families)

    def fail(self, key_path: str, message: str):
        raise ConfigError(self.cfg.source, key_path, message)

    # -- before anything is written -------------------------------------------------------------
    def check_config(self) -> None:
        """Checks that need the registries: the model serves this task and takes these
        parameters, the metrics are this task's."""
        cfg = self.cfg
        problem = self.model_name_problem(cfg.model.name)
        if problem:
            self.fail("model.name", problem)
        for key, message in check_model_params(cfg.model.name, cfg.model.internal_params.arch,
                                               self.model_inputs, self.scopes()):
            self.fail(f"{IP}.{key}", message)
        metrics = cfg.training.metrics
        if "training.metrics" not in self.config_defaults:  # the model scores itself ('model')
            metrics = []
        elif not metrics:
            self.fail("training.metrics", f"expected at least one of {', '.join(self.metric_names())}")
        for name in metrics:
            if not METRICS.serves(name, self.scopes()):
                self.fail("training.metrics", f"unknown metric {name!r}"
                                              f"{did_you_mean(name, self.metric_names())} "
                                              f"({self.name} metrics: "
                                              f"{', '.join(self.metric_names())})")
        if len({m.lower() for m in metrics}) != len(metrics):
            self.fail("training.metrics", "a metric is listed twice")
        # The resolved config records every architecture parameter, defaults included.
        defaults = {k: list(d) if isinstance(d, tuple) else d
                    for k, (_, d) in model_params(cfg.model.name, self.model_inputs,
                                                  self.scopes()).items()}
        cfg.model.internal_params.arch = {**defaults, **cfg.model.internal_params.arch}

    def build_metrics(self, device: torch.device) -> list:
        """The configured metrics, found in this task's scopes, on `device`."""
        return [METRICS.get(n, self.scopes())(device=device) for n in self.cfg.training.metrics]

    @classmethod
    def model_names(cls) -> list[str]:
        return MODELS.names(cls.scopes())

    @classmethod
    def model_name_problem(cls, name: str) -> str | None:
        """Why `name` is not a model of this task (None when it is)."""
        mine = cls.model_names()
        if name not in MODELS:
            return (f"unknown model {name!r}{did_you_mean(name, mine)} ({cls.name} models: "
                    f"{', '.join(mine)})")
        if not MODELS.serves(name, cls.scopes()):
            return (f"{name!r} is a {'/'.join(model_tasks(name))} model, not one for task "
                    f"{cls.name!r} (its models: {', '.join(mine)})")
        return None

    @classmethod
    def metric_names(cls) -> list[str]:
        return metric_names(cls.scopes())

    def resolve_builtin_sets(self) -> None:
        from ..data.builtin import resolve_builtin_sets
        resolve_builtin_sets(self.cfg)

    def check_data(self) -> None:
        """Every data problem as a ConfigError, without decoding the data."""
        raise NotImplementedError

    def training_samples(self) -> dict[str, int]:
        """After check_data: samples per epoch of each training set (label -> images or rows
        times repeat)."""
        raise NotImplementedError

    def setup(self, device: torch.device, stage: str = "fit", held_out: bool = False) -> Loaders:
        """Load metrics and data for a stage; returns the loaders.
        fit: training and eval sets (after check_data). evaluate: the eval sets alone, from
        the config (the node's, or one with a data TOML's sets), with the checkpoint's task
        state already loaded; `held_out` adds the sets training held out (test_indices).
        predict: metrics and loss only, no data."""
        raise NotImplementedError

    def eval_order(self) -> list[tuple[str, list[str]]]:
        """After setup: each eval set's name and sample names, in the order evaluation visits
        them (eval writes its per-sample rows and images in this order)."""
        raise NotImplementedError

    def model_kwargs(self) -> dict:
        """The constructor arguments this task supplies (`model_inputs`): from the data when
        training, from the checkpoint's task state (load_state_dict) after it."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        from ..models import build_model
        return build_model(self.cfg.model.name, self.cfg.model.internal_params.arch,
                           self.scopes(), **self.model_kwargs())

    def describe(self) -> str:
        """A few words for the log's first line (e.g. 'x2')."""
        return ""

    def summary_keys(self) -> list[str]:
        """Per eval set, the summary.csv keys evaluation fills: 'loss' and the metrics."""
        raise NotImplementedError

    def per_sample_columns(self) -> list[str]:
        raise NotImplementedError

    # -- training ------------------------------------------------------------------------------
    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch's raw input, as the loader gives it -> what the model takes (training,
        validation, rumpy.predict and export all go through this)."""
        raise NotImplementedError

    def training_loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    # -- several networks (docs/design.md, "Add a network to a task") ---------------------------
    def extra_networks(self) -> dict:
        """The networks this task trains beside its output network (the one `build_model`
        makes, which eval, predict and export use): {name: (module, GroupSettings)}. Each is
        optimised by its own group and saved as the checkpoint part `name`. Called once per
        handler, after the output network is built (the same seed draws the same weights)."""
        return {}

    def own_training_step(self) -> bool:
        """Whether `training_step` drives each iteration even without extra networks (dan:
        losses on the network's intermediate outputs, recorded as train-<name> terms)."""
        return False

    def training_step(self, handler, batch: dict) -> torch.Tensor:
        """One iteration of a task with extra networks: forward passes, each group's
        `backward_step` when it is due (`handler.groups[name].due(handler.step)`), the output
        network's through `handler.optimize(loss)` (EMA included); `handler.record(name,
        value)` for the train-<name> columns. Returns the output network's loss (train-loss)."""
        raise NotImplementedError

    def train_terms(self) -> list[str]:
        """Names of the loss terms recorded in training (summary columns train-<name>)."""
        return []

    def batch_inputs(self, batch: dict) -> tuple:
        """A batch dict (as the loaders give it) -> the model's positional inputs: a loaded
        model accepts the task's batch dict as well as tensors."""
        raise NotImplementedError(f"task {self.name!r} does not map a batch to model inputs")

    def column_directions(self) -> dict[str, str]:
        """Directions ('max'/'min') of metrics the registry does not know (a model's own)."""
        return {}

    def evaluate(self, handler, with_outputs: bool = True) -> EvalResult:
        raise NotImplementedError

    def baseline(self) -> dict[str, dict[str, float]]:
        """The baseline's scores per eval set (bicubic upscaling, the mean predictor)."""
        raise NotImplementedError

    def visuals(self, result: EvalResult) -> dict[str, list[tuple[str, Image.Image]]]:
        """Images to save and track per eval set: (name, image)."""
        return {}

    def overfit(self, batch: dict) -> None:
        """Overfit mode: validate on this training batch instead of the eval sets (called
        after setup, before the baseline)."""
        self.fail("training.overfit", f"task {self.name!r} has no overfit mode")

    def state_dict(self) -> dict:
        """Task state kept in the checkpoint (e.g. normalisation statistics): with the node's
        config it rebuilds the model and its evaluation without the training data."""
        return {}

    # -- after training: rumpy eval, predict, export-model ----------------------------------------
    sample_unit: ClassVar[str] = "samples"      # what eval reports count ("images")
    model_takes_batch: ClassVar[bool] = False   # the model's forward takes the batch dict
    image_outputs: ClassVar[bool] = False       # outputs are images: eval --save-images, tiling

    def loaded_info(self) -> dict:
        """Facts about a loaded model beyond its weights, attached to `model.rumpy` (sisr:
        scale, pre_upsampled; regression: stats, target_names)."""
        return {}

    def check_inference(self, what: str, tile: int | None = None, ensemble: bool = False,
                        extra: bool = False) -> None:
        """Refuse (InferenceError) what this task's inference cannot do."""
        if tile or ensemble:
            raise InferenceError(f"tiling and self-ensemble are not available for task {self.name!r}")

    def tile_scales(self) -> tuple[int, int]:
        """(input pixels per tile pixel, output pixels per input pixel) for tiled inference."""
        return 1, 1

    def predict(self, infer, inputs):
        """User inputs (arrays, files) -> outputs, converted as in validation; `infer` is the
        runner's forward pass on prepared model inputs."""
        raise NotImplementedError(f"task {self.name!r} has no predict")

    def export_network(self, model: nn.Module) -> nn.Module:
        """The network `export-model` writes: raw inputs in, final outputs out (the task's
        conversions inside)."""
        return model

    def export_examples(self, infer) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
        """[(the exported network's input, the result of the model run the training way)] on
        real inputs, and what they are: the export check."""
        raise NotImplementedError(f"task {self.name!r} has no export")

    def export_contract(self) -> dict:
        """The network's inputs and outputs for network.json: input, output and their meaning;
        names as (input name, output name) under 'names'; dynamic dims under 'dynamic_dims'."""
        return {"names": ("inputs", "outputs"), "dynamic_dims": {0: "batch"}}

    def export_tolerance(self, reference) -> float:
        """What float32 rounding may explain in the export check."""
        return 1e-4 * max(1.0, float(abs(reference).max()))

    def check_resume(self, state: dict) -> None:
        """Refuse (ConfigError) a checkpoint the current data cannot continue."""

    def load_state_dict(self, state: dict) -> None:
        pass
