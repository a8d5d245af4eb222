"""`predict`: a trained model on new inputs, converted exactly as in training-time validation,
by the node's own task (Task.predict): sisr takes uint8 H x W x 3 arrays or image files and
gives SR uint8 arrays; regression takes N x F arrays (or images) and gives N x T float64
predictions in the targets' original units."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .load import InferenceError, info_of, load_experiment
from .runner import Runner, model_device, task_for


def _resolve_model(model_or_path, epoch, device) -> nn.Module:
    if isinstance(model_or_path, (str, Path)):
        return load_experiment(model_or_path, epoch=epoch, device=device or "cpu")
    info_of(model_or_path)
    if device is not None:
        model_or_path.to(device)
    return model_or_path


def refuse_metadata_model(info, what: str) -> None:
    if getattr(info.task_object, "takes_metadata", False):
        raise InferenceError(f"{info.path}: {info.model_name} is conditioned on each "
                             f"image's degradation metadata, which {what} cannot supply; "
                             f"evaluate it with `rumpy eval` on sets with degradation_metadata "
                             f"and metadata")


def predict(model_or_path: nn.Module | str | Path, inputs, *, epoch: int | str = "best",
            device: str | torch.device | None = None, tile: int | None = None,
            tile_overlap: int = 32, self_ensemble: bool = False):
    """Run a model from `load_experiment` (or the node at a path, loading `epoch`) on `inputs`.

    sisr: one image (array or path) -> one uint8 array; a list -> a list. `tile` (LR pixels)
    runs images in tiles with `tile_overlap` pixels of context (equal to whole-image inference
    when the receptive field fits in the overlap); `self_ensemble` averages the 8 flips and
    rotations. regression: an array of samples (or one sample) or a list of images -> a float64
    array N x T (or T) in original units."""
    model = _resolve_model(model_or_path, epoch, device)
    info = info_of(model)
    refuse_metadata_model(info, "rumpy.predict")
    task = task_for(info, model_device(model))
    runner = Runner(model, info, task, tile=tile, overlap=tile_overlap, ensemble=self_ensemble)
    return task.predict(runner.infer, inputs)
