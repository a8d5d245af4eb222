"""`predict`: a trained model on new inputs, converted exactly as in training-time validation.

sisr: uint8 H x W x 3 arrays (or image files) -> SR uint8 arrays: the task's own input
conversion (to [0, 1]; bicubic pre-upsampling for pre-upsampled models), the model, then
clamping and rounding to 8 bits as the metrics see it.
regression: N x F arrays (or N x C x H x W; or images / image files for image models) ->
N x T float64 predictions in the targets' original units (inputs normalised and outputs mapped
back with the checkpoint's statistics, by the task's own code)."""
from __future__ import annotations

from pathlib import Path
import numpy as np
import torch
from torch import nn

from ..data.datasets import to_tensor
from ..data.images import quantize, read_rgb
from ..models import MODELS
from .load import InferenceError, info_of, load_experiment
from .runner import Runner, make_task, model_device

_CHUNK = 256  # regression samples per forward pass


def _is_single(x) -> bool:
    return isinstance(x, (str, Path)) or (isinstance(x, np.ndarray) and x.ndim in (2, 3))


def as_rgb(item, where: str) -> np.ndarray:
    """An H x W x 3 uint8 array from a file, or from an array as read_rgb would give it
    (grayscale expanded, alpha dropped)."""
    if isinstance(item, (str, Path)):
        try:
            return read_rgb(Path(item))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise InferenceError(f"{where}: cannot read image {item}: {reason}") from None
    array = np.asarray(item)
    if array.dtype != np.uint8:
        raise InferenceError(f"{where}: expected a uint8 image, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InferenceError(f"{where}: expected an H x W x 3 image, got shape {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def _resolve_model(model_or_path, epoch, device) -> nn.Module:
    if isinstance(model_or_path, (str, Path)):
        return load_experiment(model_or_path, epoch=epoch, device=device or "cpu")
    info_of(model_or_path)
    if device is not None:
        model_or_path.to(device)
    return model_or_path


def refuse_metadata_model(info, what: str) -> None:
    if getattr(MODELS.get(info.model_name), "takes_metadata", False):
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
    runner = Runner(model, info, tile=tile, overlap=tile_overlap, ensemble=self_ensemble)
    task = make_task(info, model_device(model))
    if info.task == "sisr":
        return _predict_sr(task, runner, inputs)
    return _predict_regression(task, runner, info, inputs)


def _predict_sr(task, runner: Runner, inputs):
    single = _is_single(inputs)
    items = [inputs] if single else list(inputs)
    outputs = []
    for i, item in enumerate(items):
        lr = to_tensor(as_rgb(item, f"image {i}"))[None]
        sr = runner.infer(task.model_input(lr))  # the task's own conversion, as in validation
        outputs.append(quantize(sr)[0].byte().permute(1, 2, 0).cpu().numpy())
    return outputs[0] if single else outputs


def _is_image(x) -> bool:
    return isinstance(x, (str, Path)) or (isinstance(x, np.ndarray) and x.dtype == np.uint8 and
                                          x.ndim == 3 and x.shape[2] in (3, 4))


def _regression_batch(info, inputs) -> tuple[torch.Tensor, bool]:
    """(batch, one sample?). Images (files, or uint8 H x W x 3 arrays; one or a list) become
    uint8 C x H x W as the image data sets give them; anything else is samples in the model's
    layout (N x F, N x C x H x W), as the arrays data sets give them."""
    shape = list(info.model_kwargs.get("input_shape") or [])
    listed = isinstance(inputs, (list, tuple))
    if _is_image(inputs) or (listed and inputs and all(_is_image(x) for x in inputs)):
        single = not listed
        images = [as_rgb(x, f"input {i}") for i, x in enumerate([inputs] if single else inputs)]
        if len({im.shape for im in images}) > 1:
            raise InferenceError("images of different sizes: predict them one call each")
        batch = torch.stack([to_tensor(im) for im in images])
    else:
        array = np.asarray(inputs)
        if not np.issubdtype(array.dtype, np.number) or \
                np.issubdtype(array.dtype, np.complexfloating):
            raise InferenceError(f"expected numbers, got an array of {array.dtype}")
        single = array.ndim == len(shape)
        if single:
            array = array[None]
        batch = torch.from_numpy(np.ascontiguousarray(
            array, dtype=np.uint8 if array.dtype == np.uint8 else np.float32))
    if getattr(MODELS.get(info.model_name), "fixed_input_shape", False) and \
            list(batch.shape[1:]) != shape:
        raise InferenceError(f"{info.model_name} takes samples of shape {shape}, got "
                             f"{list(batch.shape[1:])}")
    return batch, single


def _predict_regression(task, runner: Runner, info, inputs) -> np.ndarray:
    batch, single = _regression_batch(info, inputs)
    preds = []
    for start in range(0, len(batch), _CHUNK):
        x = batch[start: start + _CHUNK].to(runner.device)
        # the task's own normalisation and mapping back to original units
        preds.append(task.to_original(runner.infer(task.model_input(x))).cpu().numpy())
    out = np.concatenate(preds) if preds else np.zeros((0, len(info.target_names)))
    return out[0] if single else out
