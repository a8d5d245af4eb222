"""The original tool's (RUMpy's) meta-attention checkpoints (qrcan, qedsr, qhan, qsan, qsparnet)
load by name through training.init_weights_path and give the original's outputs. The files in
tests/data/original_q_weights/ were saved by the original's own handlers at tiny sizes, with its
outputs on a fixed input and metadata (make_fixtures.py there, which needs the original's
source; these tests do not). Run as a script on a folder that script made (`--preset big`), this
file prints rumpy's max |difference| from the original's outputs for each model."""
from __future__ import annotations

import io
import json
import lzma
import sys
from pathlib import Path

import pytest
import torch

from rumpy.catalog import load_config
from rumpy.cli.train import main as train_main
from rumpy.models import build_model
from rumpy.training.init_weights import load_init_weights

from test_blind_models import TINY, blind_toml, degraded  # noqa: F401 (a fixture)

FIXTURES = Path(__file__).parent / "data" / "original_q_weights"

# rumpy's settings for the networks make_fixtures.py built with the original's handlers (their
# keyword arguments in cases.pt.xz): its sizes under rumpy's names, built as the original's
SETTINGS = {
    "qrcan": {"num_groups": 1, "num_blocks": 2, "num_features": 16, "mean_shift": False,
              "q_layer_nonlinearity": True},
    "qedsr": {"num_features": 8, "num_blocks": 2, "res_scale": 0.1, "mean_shift": False,
              "q_layer_nonlinearity": True},
    "qhan": {"num_groups": 2, "num_blocks": 1, "num_features": 16, "mean_shift": False,
             "q_layer_nonlinearity": True},
    "qsan": {"num_groups": 1, "num_blocks": 2, "num_features": 8, "reduction": 2,
             "mean_shift": False, "q_layer_nonlinearity": True, "non_local_pooling": True},
    "qsparnet": {"min_ch": 8, "max_ch": 16, "in_size": 16, "out_size": 16, "min_feat_size": 8,
                 "res_depth": 0, "bottleneck_size": 64},
}
# the --preset big networks (not committed): the original's defaults where it gave none
BIG = {
    "qrcan": {"num_groups": 3, "num_blocks": 3, "num_features": 32, "mean_shift": False,
              "q_layer_nonlinearity": True},
    "qedsr": {"num_features": 32, "num_blocks": 4, "res_scale": 0.1, "mean_shift": False,
              "q_layer_nonlinearity": False},
    "qhan": {"num_groups": 10, "num_blocks": 2, "num_features": 16, "mean_shift": False,
             "q_layer_nonlinearity": True},
    "qsan": {"mean_shift": False, "q_layer_nonlinearity": True, "non_local_pooling": True},
    "qsparnet": {},
}


def _unpack(folder: Path, name: str, to: Path) -> Path:
    """The original's checkpoint file, as its run left it (saved_models/train_model_1)."""
    to.mkdir(parents=True, exist_ok=True)
    (to / "train_model_1").write_bytes(lzma.decompress((folder / f"{name}.pt.xz").read_bytes()))
    return to / "train_model_1"


def _cases(folder: Path = FIXTURES) -> dict:
    return torch.load(io.BytesIO(lzma.decompress((folder / "cases.pt.xz").read_bytes())),
                      weights_only=True)


def _toml_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _config(sets: dict, tmp_path: Path, name: str, settings: dict, weights: Path,
            extra: str = "") -> Path:
    """A blind-SR config of `name` with these settings, starting from `weights`."""
    path = blind_toml(sets, tmp_path, name, num_epochs=1)
    params = "\n".join(f"{k} = {_toml_value(v)}" for k, v in settings.items())
    text = path.read_text().replace(TINY.get(name, "num_features = 8\nnum_blocks = 1"), params)
    text = text.replace("aim_track = false", f"aim_track = false\ninit_weights_path = "
                                              f"'{weights}'{extra}")
    path.write_text(text)
    return path


def _loaded_difference(config: Path, name: str, case: dict) -> tuple[float, dict]:
    """rumpy's model as the config builds it, the weights loaded the way a new run loads them:
    max |rumpy's output - the original's| on the case's input and metadata."""
    cfg = load_config(config)
    model = build_model(name, cfg.model.internal_params.arch, scale=2,
                        num_metadata=case["metadata"].shape[1])
    info = load_init_weights(cfg, model)
    with torch.no_grad():
        out = model.eval()(case["input"], case["metadata"])
    return float((out - case["output"]).abs().max()), info


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_originals_checkpoint_gives_its_outputs(name, degraded, tmp_path):  # noqa: F811
    case = _cases()[name]
    weights = _unpack(FIXTURES, name, tmp_path / "saved_models")
    diff, info = _loaded_difference(_config(degraded, tmp_path, name, SETTINGS[name], weights),
                                    name, case)
    assert diff <= 1e-6, (name, diff)
    assert info["names"] == "the original tool's" and not info["skipped"]
    # a bare state dict under the original's names loads too
    network = torch.load(weights, weights_only=True)["network"]
    torch.save(network, tmp_path / "bare.pt")
    diff, _ = _loaded_difference(_config(degraded, tmp_path, name, SETTINGS[name],
                                         tmp_path / "bare.pt"), name, case)
    assert diff <= 1e-6, (name, diff)


def test_a_run_starts_from_the_originals_checkpoint(degraded, tmp_path):  # noqa: F811
    """The whole user path: `train_sisr` with init_weights_path at the original's file."""
    weights = _unpack(FIXTURES, "qedsr", tmp_path / "saved_models")
    path = _config(degraded, tmp_path, "qedsr", SETTINGS["qedsr"], weights)
    assert train_main(["--parameters", str(path)]) == 0
    lineage = json.loads((tmp_path / "Results" / "blind_qedsr" / "lineage.json").read_text())
    init = lineage["init_weights"]
    assert init["source"] == str(weights) and init["names"] == "the original tool's"
    assert init["loaded"] == len(build_model("qedsr", SETTINGS["qedsr"], scale=2,
                                             num_metadata=3).state_dict())


@pytest.mark.parametrize("name, settings, file, key, expected", [
    # rumpy's own qrcan (a mean shift, no ReLU in meta-attention) is not the original's network
    ("qedsr", {**SETTINGS["qedsr"], "mean_shift": True}, "qedsr",
     "model.internal_params.mean_shift", "needs mean_shift = false in model.internal_params"),
    ("qedsr", {**SETTINGS["qedsr"], "q_layer_nonlinearity": False}, "qedsr",
     "model.internal_params.q_layer_nonlinearity", "needs q_layer_nonlinearity = true"),
    # another model's checkpoint
    ("qrcan", SETTINGS["qrcan"], "qedsr", "training.init_weights_path",
     "holds the original tool's 'qedsr' weights; expected qrcan's"),
    # the right model at another size (and the original's 20 metadata values, not the data's 3)
    ("qrcan", {**SETTINGS["qrcan"], "num_blocks": 1}, "qrcan", "training.init_weights_path",
     "does not fit qrcan with these settings: the original tool's weights 3 of another shape "
     "(e.g. body.0.body.0.q_node.attribute_integrator.0.weight (18, 20, 1, 1), expected "
     "(8, 3, 1, 1)), 12 not in the model (e.g. body.0.body.1."),
])
def test_a_mismatched_original_checkpoint_is_one_line_before_any_write(
        name, settings, file, key, expected, degraded, tmp_path, caplog):  # noqa: F811
    weights = _unpack(FIXTURES, file, tmp_path / "saved_models")
    path = _config(degraded, tmp_path, name, settings, weights)
    assert train_main(["--parameters", str(path)]) != 0
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert f"{path}: {key}: {weights}" in errors[0] and expected in errors[0], errors[0]
    assert not (tmp_path / "Results").exists()


def test_rumpys_own_checkpoint_format_is_unchanged():
    """The new settings default to rumpy's own networks (whose numbers the other tests hold):
    rumpy's names, the mean shift on, the non-local attention unpooled."""
    torch.manual_seed(0)
    for name, settings in SETTINGS.items():
        model = build_model(name, {k: v for k, v in settings.items()
                                   if k not in ("mean_shift", "non_local_pooling")},
                            scale=2, num_metadata=3)
        names = set(model.state_dict())
        assert not any("attribute_integrator" in n for n in names), name
        assert name == "qsparnet" or (model.mean_shift and
                                      not getattr(model, "non_local_pooling", False))


def _measure(folder: Path) -> None:  # pragma: no cover (run by hand)
    """python tests/test_original_q_weights.py DIR: DIR from make_fixtures.py --preset big."""
    import tempfile

    from rumpy.models.original_weights import from_original

    cases = _cases(folder)
    for name, settings in BIG.items():
        case = cases[name]
        with tempfile.TemporaryDirectory() as tmp:
            weights = _unpack(folder, name, Path(tmp))
            model = build_model(name, settings, scale=2, num_metadata=case["metadata"].shape[1])
            state = torch.load(weights, weights_only=True)["network"]
            converted, problems = from_original(model, state)
            assert not problems, problems
            model.load_state_dict(converted)
            with torch.no_grad():
                out = model.eval()(case["input"], case["metadata"])
        print(f"{name}: max |diff| {float((out - case['output']).abs().max()):.3g} "
              f"(outputs up to {float(case['output'].abs().max()):.3g}, "
              f"{sum(v.numel() for v in converted.values())} values loaded)")


if __name__ == "__main__":  # pragma: no cover
    _measure(Path(sys.argv[1]))
