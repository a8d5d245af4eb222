"""`rumpy export-model`: a saved epoch as a self-contained network for other runtimes.

The exported network is the whole mapping a consumer needs, so it is fed raw inputs; the node's
task says what that mapping is (Task.export_network, export_contract, export_examples):
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

from ..utils.atomic import atomic_write_bytes, atomic_write_text
from ..utils.folders import folder_problem
from .load import InferenceError, LoadedModel, load_experiment
from .runner import Runner, task_for

log = logging.getLogger(__name__)

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
from ..core.run_folder import EXPORT_DIR


def export_network(model: nn.Module, info: LoadedModel) -> nn.Module:
    from .prediction import refuse_metadata_model

    refuse_metadata_model(info, "export-model (its contract is image in, image out)")
    if info.batch_hook is not None:  # Python-side convenience; TorchScript would compile it
        info.batch_hook.remove()
        info.batch_hook = None
    return info.task_object.export_network(model)


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


def _onnx(network: nn.Module, example: torch.Tensor, dynamic: dict[int, str],
          names: tuple[str, str]) -> tuple[bytes, str]:
    dims = {axis: torch.export.Dim(name) for axis, name in dynamic.items()}
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
    """[(exported network's input, the PyTorch result the training way)], and what they are:
    the task's own real inputs (SR: two sizes, so a dynamic spatial size is exercised)."""
    task = task_for(info, torch.device("cpu"))
    return task.export_examples(Runner(model, info, task).infer)


_NOT_IN_JSON = ("names", "dynamic_dims", "description")


def _contract(info: LoadedModel, network: nn.Module, fmt: str, how: str) -> dict:
    params = sum(p.numel() for p in network.parameters())
    architecture = {"name": info.model_name,
                    "parameters": dict(info.cfg.model.internal_params.arch),
                    "supplied_by_the_task": info.model_kwargs, "num_parameters": params}
    io_ = info.task_object.export_contract()
    description = io_.get("description", [])
    io_ = {k: v for k, v in io_.items() if k not in _NOT_IN_JSON}
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
        "description_lines": description,
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
    described = contract.pop("description_lines", [])
    atomic_write_text(path, json.dumps(contract, indent=2) + "\n")
    c = {**contract, "description_lines": described}
    lines = [f"{c['task']} network {c['architecture']['name']} from {c['source']['node']}, "
             f"epoch {c['epoch']}",
             "metrics: " + (", ".join(f"{k} {v:.6g}" for k, v in c["metrics"].items()) or "none"),
             f"input:  {json.dumps(c['input'])}", f"output: {json.dumps(c['output'])}"]
    lines += c.pop("description_lines", [])
    lines += [f"files: {json.dumps(c['files'])}",
              f"parameters: {c['architecture']['num_parameters']:,}", "", repr(network), ""]
    atomic_write_text(folder / "network.txt", "\n".join(lines))


def export_model(path: str | Path, epoch: int | str = "best", fmt: str = "torchscript",
                 out_dir: str | Path | None = None, weights: str = "ema") -> ExportReport:
    if fmt not in FORMATS:
        raise InferenceError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    model = load_experiment(path, epoch=epoch, device="cpu", weights=weights)
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
        spec = info.task_object.export_contract()
        data, how = _onnx(network, example, spec["dynamic_dims"], tuple(spec["names"]))
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
    """What float32 rounding may explain, in the outputs' units (the task says)."""
    return info.task_object.export_tolerance(reference)
