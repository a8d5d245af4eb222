"""The task and the forward pass behind predict, eval and export: the node's own Task object
converts inputs and outputs (so inference computes what training-time validation computes), and
a Runner stands in for the training NetworkHandler, exposing the same `infer`."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import RunConfig
from ..tasks import InferenceError, Task
from .load import LoadedModel, make_task
from .tiling import self_ensemble, tiled


def model_device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def task_for(info: LoadedModel, device: torch.device, cfg: RunConfig | None = None) -> Task:
    """The node's task (on `cfg`, by default the node's config) on `device`, with the
    checkpoint's task state loaded. Its data is not set up."""
    return make_task(cfg or info.cfg, info.task_state, device)


class Runner:
    """Handler-like: `infer(prepared inputs) -> float outputs`, in eval mode, with the training
    handler's autocast (a run trained with AMP validated in float16), optionally tiled and
    self-ensembled (SR). `on_output` sees every output batch (eval saves images with it)."""

    def __init__(self, model: nn.Module, info: LoadedModel, task: Task | None = None,
                 tile: int | None = None,
                 overlap: int = 32, ensemble: bool = False,
                 on_output: Callable[[torch.Tensor], None] | None = None):
        task = task or info.task_object
        if (tile or ensemble) and not task.image_outputs:
            raise InferenceError(f"tiling and self-ensemble are for image outputs, not task "
                                 f"{task.name!r}")
        if tile is not None and (tile < 1 or overlap < 0):
            raise InferenceError(f"tile must be >= 1 and overlap >= 0, got {tile} and {overlap}")
        self.task = task
        self.model = model
        self.device = model_device(model)
        self.amp = bool(info.cfg.training.amp) and self.device.type == "cuda"
        # tile and overlap are in the task's input pixels (LR for SR)
        factor, self.out_scale = task.tile_scales()
        self.tile = tile * factor if tile else None
        self.overlap = overlap * factor
        self.ensemble = ensemble
        self.on_output = on_output

    def _forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.model(x, *extra)
        return out.float()

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        if self.tile is None:
            return self._forward(x)
        return tiled(self._forward, x, self.tile, self.overlap, self.out_scale)

    @torch.no_grad()
    def infer(self, inputs: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """`extra`: a conditioned model's metadata (whole images only: one vector per image)."""
        self.model.eval()
        if extra:
            self.task.check_inference("infer", self.tile, self.ensemble, extra=True)
            out = self._forward(inputs, *extra)
            if self.on_output is not None:
                self.on_output(out)
            return out
        out = self_ensemble(self._tiled, inputs) if self.ensemble else self._tiled(inputs)
        if self.on_output is not None:
            self.on_output(out)
        return out
