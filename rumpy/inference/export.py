"""`rumpy export-model`: a saved epoch as a self-contained network for other runtimes.

The exported network is the whole mapping a consumer needs, so it is fed raw inputs:
  sisr:        LR image, float32 NCHW RGB in [0, 1] -> SR image, float32 NCHW (not clamped);
               a pre-upsampled model (srcnn, vdsr) has its bicubic upsampling inside.
  regression:  raw samples (float32 N x F, or NCHW images in [0, 1]) -> float64 N x T in the
               targets' original units; the training-set z-scoring of inputs and the mapping
               of outputs back to original units are inside.
Beside model.pt (TorchScript) or model.onnx: network.txt (readable) and network.json (the
contract: task, architecture, scale, layout, ranges, epoch and its metrics, source node).
The command then runs its own file on a real input (a crop of an eval image, or eval samples)
and reports the largest absolute difference from the PyTorch model run the training way."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.images import bicubic, list_images, read_rgb, to_float
from ..utils.atomic import atomic_write_bytes, atomic_write_text
from ..utils.folders import folder_problem
from .load import InferenceError, LoadedModel, load_experiment
from .runner import Runner, make_task

log = logging.getLogger(__name__)

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
EXPORT_DIR = "export"
_MAX_SIDE = 96        # the check's SR input is a crop of at most this many LR pixels a side
_CHECK_SAMPLES = 8    # regression samples the check runs


class SRNetwork(nn.Module):
    """LR in [0, 1] -> SR: the model, after the task's bicubic pre-upsampling when it has one."""

    def __init__(self, model: nn.Module, scale: int, pre_upsampled: bool):
        super().__init__()
        self.model = model
        self.scale = scale
        self.pre_upsampled = pre_upsampled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_upsampled:
            x = bicubic(x, (x.shape[-2] * self.scale, x.shape[-1] * self.scale))
        return self.model(x)


class RegressionNetwork(nn.Module):
    """Raw inputs -> predictions in original units: the task's normalisation on both sides
    (the same operations as RegressionTask._inputs and ._original), around the model."""

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


def export_network(model: nn.Module, info: LoadedModel) -> nn.Module:
    from .prediction import refuse_metadata_model

    refuse_metadata_model(info, "export-model (its contract is image in, image out)")
    if info.task == "sisr":
        return SRNetwork(model, info.scale, info.pre_upsampled).eval()
    return RegressionNetwork(model, info.stats, info.normalize_inputs,
                             info.normalize_targets).eval()


# -- a real input for the check ------------------------------------------------------------------
def _centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(img[top: top + side, left: left + side])


def sr_check_image(info: LoadedModel) -> tuple[np.ndarray, str]:
    """A centre crop of the first image of the node's first eval set, or (absent) of a
    scikit-image photo; H x W x 3 uint8."""
    for ds in info.cfg.data.eval_sets.values():
        folder = Path(getattr(ds, "lr", "") or "")
        try:
            images = list_images(folder) if folder.is_dir() else []
            if images:
                return _centre_crop(read_rgb(images[0]), _MAX_SIDE), f"{images[0]} (centre crop)"
        except (OSError, ValueError):
            pass
    from skimage import data

    return _centre_crop(data.astronaut()[40:, 100:], 64), "scikit-image astronaut (crop)"


def regression_check_inputs(info: LoadedModel, cfg) -> tuple[torch.Tensor, str]:
    """The first samples of the node's first eval set as the data pipeline gives them, or
    (absent) samples drawn around the training statistics."""
    from .eval_data import _CHECKERS
    from ..data.regression import EvalSamples

    for label, ds in cfg.data.eval_sets.items():
        try:
            checked = _CHECKERS[ds.type](cfg, "eval_sets", label, ds)
        except Exception:  # absent or changed data: fall back to synthetic samples
            continue
        checked.load(cfg)
        samples = EvalSamples(checked)
        count = min(_CHECK_SAMPLES, len(samples))
        if checked.sample_shape() == list(info.model_kwargs["input_shape"]):
            return torch.stack([samples[i]["inputs"] for i in range(count)]), \
                f"{count} samples of eval set {checked.name}"
    generator = torch.Generator().manual_seed(0)
    shape = list(info.model_kwargs["input_shape"])
    mean, std = info.stats["input_mean"].float(), info.stats["input_std"].float()
    x = mean + std * torch.randn([_CHECK_SAMPLES] + shape, generator=generator)
    if len(shape) == 3 and x.max() <= 1.5:  # images: in [0, 1] like to_float's
        x = x.clamp(0, 1)
    return x, f"{_CHECK_SAMPLES} samples drawn from the training statistics"


# -- the formats ---------------------------------------------------------------------------------
def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:160] if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    """torch's exporters warn about their own internals; the user sees our summary instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _torchscript(network: nn.Module, example: torch.Tensor) -> tuple[bytes, str]:
    with _quiet():
        try:
            compiled, how = torch.jit.script(network), "torch.jit.script"
        except Exception as exc:  # a model TorchScript cannot compile: record one pass instead
            log.warning("torch.jit.script failed (%s); tracing instead: shapes the model computes "
                        "in Python are then fixed", _first_line(exc))
            try:
                compiled, how = torch.jit.trace(network, example), "torch.jit.trace"
            except Exception as exc2:
                raise InferenceError(f"TorchScript export failed: {_first_line(exc2)}") from None
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)  # (torch 2.13 marks torch.jit deprecated: warns)
    return buffer.getvalue(), how


def _onnx(network: nn.Module, example: torch.Tensor, task: str, names: tuple[str, str]
          ) -> tuple[bytes, str]:
    dims = {0: torch.export.Dim("batch")}
    if task == "sisr":
        dims.update({2: torch.export.Dim("height"), 3: torch.export.Dim("width")})
    # a batch of 2: torch.export specialises dynamic dimensions that are 1 in the example
    example = torch.cat([example, example]) if example.shape[0] == 1 else example
    with _quiet():
        try:
            program = torch.onnx.export(network, (example,), dynamo=True, verbose=False,
                                        input_names=[names[0]], output_names=[names[1]],
                                        dynamic_shapes=(dims,))
        except Exception as exc:
            raise InferenceError(f"ONNX export failed: {_first_line(exc)}") from None
    return program.model_proto.SerializeToString(), "torch.onnx.export (dynamo)"


def _run_torchscript(path: Path, x: torch.Tensor) -> np.ndarray:
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(x).numpy()


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError:
        raise InferenceError("checking an ONNX export needs onnxruntime: pip install "
                             "'rumpy[export]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


_RUNNERS = {"torchscript": _run_torchscript, "onnx": _run_onnx}


# -- the command ---------------------------------------------------------------------------------
@dataclass
class ExportReport:
    folder: Path
    file: Path
    format: str
    epoch: int
    max_abs_diff: float
    checked_on: str
    sizes: list = field(default_factory=list)
    passed: bool = True
    tolerance: float = 0.0


def _reference_and_inputs(model: nn.Module, info: LoadedModel
                          ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """[(exported network's input, the PyTorch result the training way)], and what they are.
    SR is checked at two sizes (the second a crop of the first), so a dynamic spatial size is
    exercised."""
    task = make_task(info, torch.device("cpu"))
    runner = Runner(model, info)
    if info.task == "sisr":
        img, source = sr_check_image(info)
        h, w = img.shape[:2]
        crops = [img, np.ascontiguousarray(img[: max(2, h * 3 // 4 + 1), : max(2, w * 2 // 3 + 1)])]
        pairs = []
        for crop in crops:
            lr = torch.from_numpy(crop).permute(2, 0, 1)[None]
            pairs.append((to_float(lr.clone()), runner.infer(task.model_input(lr))))
        return pairs, source
    x, source = regression_check_inputs(info, info.cfg)
    return [(to_float(x.clone()) if x.dtype == torch.uint8 else x.float(),
             task.to_original(runner.infer(task.model_input(x))))], source


def _contract(info: LoadedModel, network: nn.Module, fmt: str, how: str) -> dict:
    params = sum(p.numel() for p in network.parameters())
    architecture = {"name": info.model_name,
                    "parameters": dict(info.cfg.model.internal_params.arch),
                    "supplied_by_the_task": info.model_kwargs, "num_parameters": params}
    if info.task == "sisr":
        io_ = {
            "input": {"name": "lr", "layout": "NCHW", "channels": 3, "color": "RGB",
                      "dtype": "float32", "range": [0.0, 1.0],
                      "meaning": "the LR image's 8-bit values / 255",
                      "dynamic": ["batch", "height", "width"]},
            "output": {"name": "sr", "layout": "NCHW", "channels": 3, "color": "RGB",
                       "dtype": "float32", "size": f"input height and width x {info.scale}",
                       "range": "nominally [0, 1], not clamped; rumpy clamps to [0, 1], "
                                "multiplies by 255 and rounds to get the 8-bit image"},
            "scale": info.scale,
            "pre_upsampling": ("inside the network: bicubic as MATLAB's imresize (a = -0.5, "
                               "mirrored borders), in float, not rounded" if info.pre_upsampled
                               else "none: the network takes the LR image"),
        }
    else:
        shape = list(info.model_kwargs["input_shape"])
        image = len(shape) == 3
        stats = {k: v.flatten().tolist() for k, v in info.stats.items()}
        io_ = {
            "input": {"name": "inputs", "layout": "NCHW" if image else "N x F",
                      "shape": ["batch"] + shape, "dtype": "float32",
                      "range": [0.0, 1.0] if image else "raw feature values",
                      "meaning": ("images as 8-bit values / 255 (a centre crop of the training "
                                  "size)" if image else "raw features, in the columns' order"),
                      "normalised_inside": info.normalize_inputs, "dynamic": ["batch"]},
            "output": {"name": "predictions", "layout": "N x T", "dtype": "float64",
                       "targets": info.target_names, "units": "the targets' original units",
                       "denormalised_inside": info.normalize_targets},
            "normalisation": ("inside the network: feed raw inputs, read original units; "
                              "statistics (training set) listed for reference"),
            "statistics": stats,
        }
    metrics = {k: v for k, v in info.summary_row.items()
               if k.startswith(("val-", "train-loss")) and isinstance(v, (int, float))}
    return {
        "task": info.task, "architecture": architecture, **io_,
        "metadata_inputs": [],
        "epoch": info.epoch, "metrics": metrics,
        "source": {"node": str(info.path), "experiment": info.node.root.name,
                   "branch": info.node.rel, "checkpoint": str(info.checkpoint),
                   "config": str(info.node.folder.config)},
        "exported_with": {"format": fmt, "how": how, "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _write_description(folder: Path, contract: dict, network: nn.Module) -> None:
    """network.json (merging the entries of another format exported here from the same epoch)
    and network.txt."""
    path = folder / "network.json"
    files = {}
    try:
        old = json.loads(path.read_text())
        if old.get("source") == contract["source"] and old.get("epoch") == contract["epoch"]:
            files = old.get("files", {})
    except (FileNotFoundError, ValueError):
        pass
    contract["files"] = {**files, **contract.pop("files_new")}
    atomic_write_text(path, json.dumps(contract, indent=2) + "\n")
    c = contract
    lines = [f"{c['task']} network {c['architecture']['name']} from {c['source']['node']}, "
             f"epoch {c['epoch']}",
             "metrics: " + (", ".join(f"{k} {v:.6g}" for k, v in c["metrics"].items()) or "none"),
             f"input:  {json.dumps(c['input'])}", f"output: {json.dumps(c['output'])}"]
    if c["task"] == "sisr":
        lines += [f"scale: {c['scale']}", f"pre-upsampling: {c['pre_upsampling']}"]
    else:
        lines.append(f"normalisation: {c['normalisation']}")
    lines += [f"files: {json.dumps(c['files'])}",
              f"parameters: {c['architecture']['num_parameters']:,}", "", repr(network), ""]
    atomic_write_text(folder / "network.txt", "\n".join(lines))


def export_model(path: str | Path, epoch: int | str = "best", fmt: str = "torchscript",
                 out_dir: str | Path | None = None) -> ExportReport:
    if fmt not in FORMATS:
        raise InferenceError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    model = load_experiment(path, epoch=epoch, device="cpu")
    info = model.rumpy
    folder = Path(out_dir) if out_dir else info.path / EXPORT_DIR / f"epoch_{info.epoch}"
    if out_dir is None and (info.path / EXPORT_DIR / "config.toml").is_file():
        raise InferenceError(f"{info.path / EXPORT_DIR} is a branch named '{EXPORT_DIR}'; pass -o")
    problem = folder_problem(folder)
    if problem:
        raise InferenceError(f"{'-o' if out_dir else 'export folder'}: {problem}; the export "
                             f"needs a folder it can write in")
    network = export_network(model, info)
    pairs, source = _reference_and_inputs(model, info)
    folder.mkdir(parents=True, exist_ok=True)
    example = pairs[0][0]
    if fmt == "torchscript":
        data, how = _torchscript(network, example)
    else:
        names = ("lr", "sr") if info.task == "sisr" else ("inputs", "predictions")
        data, how = _onnx(network, example, info.task, names)
    target = folder / FORMATS[fmt]
    atomic_write_bytes(target, data)
    diffs, sizes, tolerance = [], [], 0.0
    for x, reference in pairs:
        try:
            got = _RUNNERS[fmt](target, x)
        except InferenceError:
            raise
        except Exception as exc:  # the runtime refuses its own export at this input
            got, problem = None, _first_line(exc)
        if got is not None and got.shape != tuple(reference.shape):
            got, problem = None, f"output shape {got.shape}, expected {tuple(reference.shape)}"
        reference = reference.cpu().numpy()
        tolerance = max(tolerance, _tolerance(info, reference))
        diffs.append(float(np.abs(got - reference).max()) if got is not None else float("inf"))
        sizes.append(list(x.shape))
        if got is None:
            log.error("%s fails on input %s: %s", target, list(x.shape), problem)
    passed = max(diffs) <= tolerance
    contract = _contract(info, network, fmt, how)
    contract["files_new"] = {fmt: {"file": target.name, "max_abs_diff": max(diffs),
                                   "tolerance": tolerance, "check_passed": passed,
                                   "checked_on": source, "input_shapes": sizes}}
    _write_description(folder, contract, network)
    report = ExportReport(folder, target, fmt, info.epoch, max(diffs), source, sizes, passed,
                          tolerance)
    log.info("exported %s epoch %d to %s", info.path, info.epoch, target)
    return report


def _tolerance(info: LoadedModel, reference: np.ndarray) -> float:
    """What float32 rounding may explain: SR outputs live in [0, 1] (an 8-bit level is 4e-3);
    regression outputs in the targets' units."""
    if info.task == "sisr":
        return 1e-4
    return 1e-4 * max(1.0, float(np.abs(reference).max()))
