"""Regression after training: predict on arrays or images, the exported network (normalisation
inside) and its check on real samples, and the export contract. Used by RegressionTask."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.datasets import to_tensor
from ..data.images import to_float
from .base import InferenceError
from .sisr_infer import as_rgb

_CHUNK = 256          # samples per forward pass in predict
_CHECK_SAMPLES = 8    # samples the export check runs


def _is_image(x) -> bool:
    return isinstance(x, (str, Path)) or (isinstance(x, np.ndarray) and x.dtype == np.uint8 and
                                          x.ndim == 3 and x.shape[2] in (3, 4))


def _batch(task, inputs) -> tuple[torch.Tensor, bool]:
    """(batch, one sample?). Images (files, or uint8 H x W x 3 arrays; one or a list) become
    uint8 C x H x W as the image data sets give them; anything else is samples in the model's
    layout (N x F, N x C x H x W), as the arrays data sets give them."""
    shape = list(task.model_kwargs().get("input_shape") or [])
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
    if task.fixed_input_shape and list(batch.shape[1:]) != shape:
        raise InferenceError(f"{task.cfg.model.name} takes samples of shape {shape}, got "
                             f"{list(batch.shape[1:])}")
    return batch, single


def predict_samples(task, infer, inputs) -> np.ndarray:
    """-> N x T float64 predictions in the targets' original units (or T for one sample)."""
    batch, single = _batch(task, inputs)
    preds = []
    for start in range(0, len(batch), _CHUNK):
        x = batch[start: start + _CHUNK].to(task.device)
        # the task's own normalisation and mapping back to original units
        preds.append(task.to_original(infer(task.model_input(x))).cpu().numpy())
    out = np.concatenate(preds) if preds else np.zeros((0, len(task.target_names)))
    return out[0] if single else out


class RegressionNetwork(nn.Module):
    """Raw inputs -> predictions in original units: the task's normalisation on both sides
    (the same operations as RegressionTask.model_input and .to_original), around the model."""

    def __init__(self, model: nn.Module, stats: dict, normalize_inputs: bool,
                 normalize_targets: bool):
        super().__init__()
        self.model = model
        self.normalize_inputs = normalize_inputs
        self.normalize_targets = normalize_targets
        self.register_buffer("input_mean", stats["input_mean"].float().clone())
        self.register_buffer("input_std", stats["input_std"].float().clone())
        self.register_buffer("target_mean", stats["target_mean"].double().clone())
        self.register_buffer("target_std", stats["target_std"].double().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.normalize_inputs:
            x = (x - self.input_mean) / self.input_std
        y = self.model(x).double()
        if self.normalize_targets:
            y = y * self.target_std + self.target_mean
        return y


def check_inputs(task) -> tuple[torch.Tensor, str]:
    """The first samples of the node's first eval set as the data pipeline gives them, or
    (absent) samples drawn around the training statistics."""
    from ..data.regression import EvalSamples

    cfg = task.cfg
    shape = list(task.model_kwargs()["input_shape"])
    for label, ds in cfg.data.eval_sets.items():
        try:
            checked = task.check_set("eval_sets", label, ds)
        except Exception:  # absent or changed data: fall back to synthetic samples
            continue
        checked.load(cfg)
        samples = EvalSamples(checked)
        count = min(_CHECK_SAMPLES, len(samples))
        if checked.sample_shape() == shape:
            return torch.stack([samples[i]["inputs"] for i in range(count)]), \
                f"{count} samples of eval set {checked.name}"
    generator = torch.Generator().manual_seed(0)
    mean, std = task.stats["input_mean"].float(), task.stats["input_std"].float()
    x = mean + std * torch.randn([_CHECK_SAMPLES] + shape, generator=generator)
    if len(shape) == 3 and x.max() <= 1.5:  # images: in [0, 1] like to_float's
        x = x.clamp(0, 1)
    return x, f"{_CHECK_SAMPLES} samples drawn from the training statistics"


def export_examples(task, infer):
    x, source = check_inputs(task)
    return [(to_float(x.clone()) if x.dtype == torch.uint8 else x.float(),
             task.to_original(infer(task.model_input(x))))], source


def export_contract(task) -> dict:
    shape = list(task.model_kwargs()["input_shape"])
    image = len(shape) == 3
    data = task.cfg.data
    normalisation = ("inside the network: feed raw inputs, read original units; statistics "
                     "(training set) listed for reference")
    return {
        "names": ("inputs", "predictions"),
        "dynamic_dims": {0: "batch"},
        "input": {"name": "inputs", "layout": "NCHW" if image else "N x F",
                  "shape": ["batch"] + shape, "dtype": "float32",
                  "range": [0.0, 1.0] if image else "raw feature values",
                  "meaning": ("images as 8-bit values / 255 (a centre crop of the training "
                              "size)" if image else "raw features, in the columns' order"),
                  "normalised_inside": bool(data.normalize_inputs), "dynamic": ["batch"]},
        "output": {"name": "predictions", "layout": "N x T", "dtype": "float64",
                   "targets": list(task.target_names), "units": "the targets' original units",
                   "denormalised_inside": bool(data.normalize_targets)},
        "normalisation": normalisation,
        "statistics": {k: v.flatten().tolist() for k, v in task.stats.items()},
        "description": [f"normalisation: {normalisation}"],
    }
