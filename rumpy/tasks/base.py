"""The Task: what is trained. A task owns its data kinds and their checks, how a named batch
becomes model input and target, the loss over a batch, evaluation (per-sample records and
whole-set aggregates), its baseline, its visual outputs and its state in the checkpoint. The
run management around it (plan, tree, loop, callbacks, checkpoints) never looks inside a batch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn

from ..config import ConfigError, RunConfig
from ..data.loaders import Loaders
from ..metrics import METRICS, metric_names
from ..models import MODELS, check_model_params, model_params, model_tasks
from ..registry import Registry, did_you_mean

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
    dataset_kinds: ClassVar[tuple[str, ...]]   # the first is the default `type`
    model_inputs: ClassVar[tuple[str, ...]]    # constructor arguments the task supplies
    baseline_name: ClassVar[str]               # 'bicubic', 'mean predictor'
    per_sample_file: ClassVar[str]             # result_outputs/<this>_epoch_<N>.csv

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.device = torch.device("cpu")
        from ..training.distributed import SINGLE
        self.dist = SINGLE  # data parallel: evaluation is sharded over the ranks and gathered
        self.loaders: Loaders | None = None

    def fail(self, key_path: str, message: str):
        raise ConfigError(self.cfg.source, key_path, message)

    # -- before anything is written -------------------------------------------------------------
    def check_config(self) -> None:
        """Checks that need the registries: the model serves this task and takes these
        parameters, the metrics are this task's."""
        cfg = self.cfg
        mine = self.model_names()
        if cfg.model.name not in MODELS:
            self.fail("model.name", f"unknown model {cfg.model.name!r}"
                                    f"{did_you_mean(cfg.model.name, mine)} ({self.name} models: "
                                    f"{', '.join(mine)})")
        if self.name not in model_tasks(cfg.model.name):
            self.fail("model.name", f"{cfg.model.name!r} is a {'/'.join(model_tasks(cfg.model.name))} "
                                    f"model, not one for task {self.name!r} (its models: "
                                    f"{', '.join(mine)})")
        for key, message in check_model_params(cfg.model.name, cfg.model.internal_params.arch):
            self.fail(f"{IP}.{key}", message)
        metrics = cfg.training.metrics
        if not metrics:
            self.fail("training.metrics", f"expected at least one of {', '.join(self.metric_names())}")
        for name in metrics:
            if name not in METRICS or METRICS.meta(name).get("task") != self.name:
                self.fail("training.metrics", f"unknown metric {name!r}"
                                              f"{did_you_mean(name, self.metric_names())} "
                                              f"({self.name} metrics: "
                                              f"{', '.join(self.metric_names())})")
        if len({m.lower() for m in metrics}) != len(metrics):
            self.fail("training.metrics", "a metric is listed twice")
        # The resolved config records every architecture parameter, defaults included.
        defaults = {k: list(d) if isinstance(d, tuple) else d
                    for k, (_, d) in model_params(cfg.model.name).items()}
        cfg.model.internal_params.arch = {**defaults, **cfg.model.internal_params.arch}

    @classmethod
    def model_names(cls) -> list[str]:
        return [m for m in MODELS if cls.name in model_tasks(m)]

    @classmethod
    def metric_names(cls) -> list[str]:
        return metric_names(cls.name)

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

    def setup(self, device: torch.device) -> Loaders:
        """Load metrics and data (decoding, statistics); returns the loaders."""
        raise NotImplementedError

    def model_kwargs(self) -> dict:
        """The constructor arguments this task supplies (`model_inputs`) from the data."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        from ..models import build_model
        return build_model(self.cfg.model.name, self.cfg.model.internal_params.arch,
                           **self.model_kwargs())

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
        """Task state kept in the checkpoint (e.g. normalisation statistics)."""
        return {}

    def check_resume(self, state: dict) -> None:
        """Refuse (ConfigError) a checkpoint the current data cannot continue."""

    def load_state_dict(self, state: dict) -> None:
        pass
