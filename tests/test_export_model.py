"""`rumpy export-model`: TorchScript and ONNX files of real trained nodes
(tests/inference_nodes.py), loaded back with torch.jit.load and onnxruntime and compared with
the PyTorch model run the training way; network.json's contract; dynamic batch (and spatial
size for SR); a file that does not reproduce the model fails the command."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from inference_nodes import regression_node, sr_nodes

import rumpy
from rumpy.cli.main import main as rumpy_main
from rumpy.data.images import read_rgb, to_float
from rumpy.inference.export import export_model
from rumpy.inference.runner import Runner

# torch 2.13 marks torch.jit deprecated; loading the TorchScript files is the point here
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="session")
def sr(tmp_path_factory) -> dict:
    return sr_nodes(tmp_path_factory)


@pytest.fixture(scope="session")
def reg(tmp_path_factory) -> dict:
    return regression_node(tmp_path_factory)


def _sr_reference(model, lr: np.ndarray) -> np.ndarray:
    """The float SR output as validation computes it (before rounding to 8 bits)."""
    x = to_float(torch.from_numpy(lr).permute(2, 0, 1)[None])
    return Runner(model, model.rumpy).infer(x).numpy()


def _onnx(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_sr_torchscript_export(sr, capsys):
    root = sr["root"]
    assert rumpy_main(["export-model", str(root), "--epoch", "best",
                       "--format", "torchscript"]) == 0
    model = rumpy.load_experiment(root)
    folder = root / "export" / f"epoch_{model.rumpy.epoch}"
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{folder / 'model.pt'}: epoch {model.rumpy.epoch}, checked on ")
    assert "0001.png (centre crop)" in line and "largest absolute difference from PyTorch" in line
    scripted = torch.jit.load(str(folder / "model.pt"))
    lr = np.ascontiguousarray(read_rgb(sr["coffee_lr"] / "0002x2.png")[:15, :17])
    with torch.no_grad():
        got = scripted(to_float(torch.from_numpy(lr).permute(2, 0, 1)[None])).numpy()
    assert got.shape == (1, 3, 30, 34)
    assert np.abs(got - _sr_reference(model, lr)).max() < 1e-6
    contract = json.loads((folder / "network.json").read_text())
    assert contract["task"] == "sisr" and contract["scale"] == 2
    assert contract["architecture"]["name"] == "edsr"
    assert contract["architecture"]["parameters"] == {"num_features": 8, "num_blocks": 1,
                                                      "res_scale": 0.1}
    assert contract["input"]["layout"] == "NCHW" and contract["input"]["range"] == [0.0, 1.0]
    assert contract["input"]["channels"] == 3 and contract["metadata_inputs"] == []
    assert contract["epoch"] == model.rumpy.epoch
    assert contract["metrics"]["val-PSNR"] == model.rumpy.summary_row["val-PSNR"]
    assert contract["source"]["node"] == str(root)
    assert contract["files"]["torchscript"]["max_abs_diff"] < 1e-6
    text = (folder / "network.txt").read_text()
    assert "EDSR(" in text and "scale: 2" in text


def test_sr_onnx_export_has_dynamic_batch_and_size(sr, tmp_path):
    branch = sr["branch"]
    report = export_model(branch, epoch=1, fmt="onnx", out_dir=tmp_path / "onnx")
    assert report.max_abs_diff < 1e-5 and len(report.sizes) == 2  # checked at two sizes
    model = rumpy.load_experiment(branch, epoch=1)   # inherited: the parent's checkpoint
    session = _onnx(tmp_path / "onnx" / "model.onnx")
    name = session.get_inputs()[0].name
    for lr in (read_rgb(sr["eval_lr"] / "0002.png"),
               np.ascontiguousarray(read_rgb(sr["coffee_lr"] / "0001x2.png")[:13, :9])):
        x = to_float(torch.from_numpy(lr).permute(2, 0, 1)[None]).numpy()
        got = session.run(None, {name: np.concatenate([x, x, x])})[0]   # batch of 3
        assert got.shape == (3, 3, 2 * lr.shape[0], 2 * lr.shape[1])
        assert np.abs(got - _sr_reference(model, lr)).max() < 1e-5
    contract = json.loads((tmp_path / "onnx" / "network.json").read_text())
    assert contract["epoch"] == 1 and contract["source"]["branch"] == "warm"
    assert contract["input"]["dynamic"] == ["batch", "height", "width"]


def test_regression_exports_take_raw_inputs_and_give_original_units(reg, tmp_path, capsys):
    root = reg["root"]
    x, _ = reg["valid"]
    expected = rumpy.predict(str(root), x, epoch="last")
    assert rumpy_main(["export-model", str(root), "--epoch", "last", "--format", "torchscript",
                       "-o", str(tmp_path)]) == 0
    assert rumpy_main(["export-model", str(root), "--epoch", "last", "--format", "onnx",
                       "-o", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "8 samples of eval set held_out" in lines[1]
    scripted = torch.jit.load(str(tmp_path / "model.pt"))
    with torch.no_grad():
        got = scripted(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float64 and np.abs(got - expected).max() < 1e-9
    session = _onnx(tmp_path / "model.onnx")
    name = session.get_inputs()[0].name
    for rows in (x[:1], x[:5], x):   # dynamic batch
        got = session.run(None, {name: rows})[0]
        assert got.shape == (len(rows), 2)
        assert np.abs(got - expected[: len(rows)]).max() < 1e-5
    contract = json.loads((tmp_path / "network.json").read_text())
    assert set(contract["files"]) == {"torchscript", "onnx"}   # both formats, one contract
    assert contract["task"] == "regression" and contract["epoch"] == 3
    assert contract["input"]["shape"] == ["batch", 6] and contract["input"]["normalised_inside"]
    assert contract["output"]["targets"] == ["wave", "line"]
    assert contract["output"]["denormalised_inside"] and contract["output"]["dtype"] == "float64"
    assert len(contract["statistics"]["input_mean"]) == 6


def test_export_errors_are_one_line(sr, caplog):
    assert rumpy_main(["export-model", str(sr["root"]), "--epoch", "5"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{sr['root']} has no checkpoint of epoch 5 (saved epochs: 1, 2)"]
    with pytest.raises(SystemExit):
        rumpy_main(["export-model", str(sr["root"]), "--format", "tflite"])


def test_an_export_that_does_not_reproduce_the_model_fails_the_command(reg, tmp_path,
                                                                       monkeypatch, caplog):
    from rumpy.inference import export

    real = export._RUNNERS["torchscript"]
    monkeypatch.setitem(export._RUNNERS, "torchscript", lambda path, x: real(path, x) + 0.01)
    assert rumpy_main(["export-model", str(reg["root"]), "-o", str(tmp_path)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "does not reproduce the model: it differs by 0.01" in errors[0]
    check = json.loads((tmp_path / "network.json").read_text())["files"]["torchscript"]
    assert check["check_passed"] is False and check["max_abs_diff"] == pytest.approx(0.01)
