"""The task and the forward pass behind predict, eval and export: the node's own Task object
converts inputs and outputs (so inference computes what training-time validation computes), and
a Runner stands in for the training NetworkHandler, exposing the same `infer`."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import ConfigError, RunConfig
from ..tasks import TASKS, Task
from .load import InferenceError, LoadedModel
from .tiling import self_ensemble, tiled


def model_device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def make_task(info: LoadedModel, device: torch.device, cfg: RunConfig | None = None) -> Task:
    """The node's task (on `cfg`, by default the node's config), checked against the
    registries, on `device`, with the checkpoint's task state (regression: the normalisation
    statistics) loaded. Its data is not set up."""
    task = TASKS.get(info.task)(cfg or info.cfg)
    try:
        task.check_config()
    except ConfigError as exc:
        raise InferenceError(str(exc)) from None
    task.device = device
    if info.task == "regression":
        task.target_names = list(info.target_names)
    task.load_state_dict(info.task_state)
    return task


class Runner:
    """Handler-like: `infer(prepared inputs) -> float outputs`, in eval mode and float32 as the
    training handler validates (whatever precision it trained in), optionally tiled and
    self-ensembled (SR). `on_output` sees every output batch (eval saves images with it)."""

    def __init__(self, model: nn.Module, info: LoadedModel, tile: int | None = None,
                 overlap: int = 32, ensemble: bool = False,
                 on_output: Callable[[torch.Tensor], None] | None = None):
        if (tile or ensemble) and info.task != "sisr":
            raise InferenceError("tiling and self-ensemble are for super-resolution models only")
        if tile is not None and (tile < 1 or overlap < 0):
            raise InferenceError(f"tile must be >= 1 and overlap >= 0, got {tile} and {overlap}")
        self.model = model
        self.device = model_device(model)
        # tile and overlap are in LR pixels; a pre-upsampled model's input is `scale` times larger
        factor = info.scale if info.pre_upsampled else 1
        self.tile = tile * factor if tile else None
        self.overlap = overlap * factor
        self.out_scale = 1 if info.pre_upsampled or info.task != "sisr" else info.scale
        self.ensemble = ensemble
        self.on_output = on_output

    def _forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        return self.model(x, *extra).float()

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        if self.tile is None:
            return self._forward(x)
        return tiled(self._forward, x, self.tile, self.overlap, self.out_scale)

    @torch.no_grad()
    def infer(self, inputs: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """`extra`: a conditioned model's metadata (whole images only: one vector per image)."""
        self.model.eval()
        if extra:
            if self.tile or self.ensemble:
                raise InferenceError("tiling and self-ensemble are not available for models "
                                     "conditioned on degradation metadata")
            out = self._forward(inputs, *extra)
            if self.on_output is not None:
                self.on_output(out)
            return out
        out = self_ensemble(self._tiled, inputs) if self.ensemble else self._tiled(inputs)
        if self.on_output is not None:
            self.on_output(out)
        return out
