"""ELAN, Q-ELAN (models/elan.py) and DAN's mode 'v1QELAN' (issue 22): equal to the original
tool's code on a committed fixture (tests/data/original_elan: its weights, inputs and outputs,
loaded by name), window attention as its definition, any image size, the original's names and
parameter counts, bad settings refused, and a tiny training run of each."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import rows
from test_blind_models import _summary, blind_toml, degraded  # noqa: F401  (fixture)
from test_dan import config, iso, train  # noqa: F401  (fixture)

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.models import build_model, check_model_params
from rumpy.models.elan import GMSA, pad_to_multiple

FIXTURE = Path(__file__).parent / "data" / "original_elan" / "original_elan.pt"


def unpack(weights: dict) -> dict:
    """make_fixture.py's packed state dict (one half-precision tensor) as a state dict."""
    state, at = {}, 0
    for name, shape, dtype in zip(weights["names"], weights["shapes"], weights["dtypes"]):
        size = math.prod(shape)
        state[name] = weights["flat"][at:at + size].view(shape).to(getattr(torch, dtype))
        at += size
    assert at == weights["flat"].numel()
    return state


@pytest.mark.parametrize("case", ["elan", "qelan", "dan_v1qelan"])
def test_outputs_equal_the_originals(case):
    """The original's ELAN (x2, odd windows [3, 2, 4] on an 11 x 13 image), QELAN (x3, shared
    attention, meta-attention before the first block only) and DANv1QELAN (x2, 2 iterations):
    its state dict loads strictly and every output is the original's."""
    entry = torch.load(FIXTURE, weights_only=True)[case]
    name = "dan" if case.startswith("dan") else case
    kwargs = {"num_metadata": entry["num_metadata"]} if "num_metadata" in entry else {}
    model = build_model(name, entry["params"], scale=entry["scale"], **kwargs)
    model.load_state_dict(unpack(entry["weights"]), strict=True)
    model.eval()
    x = entry["input"].float()
    with torch.no_grad():
        if name == "elan":
            out = model(x)
        elif name == "qelan":
            out = model(x, entry["metadata"].float())
        else:
            srs, codes = model(x, all_iterations=True)
            out = torch.stack(srs)
            assert (torch.stack(codes) - entry["codes"]).abs().max() <= 1e-5
    assert out.shape == entry["output"].shape
    assert (out - entry["output"]).abs().max() <= 1e-5


def _by_hand(gmsa: GMSA, x: torch.Tensor) -> torch.Tensor:
    """GMSA from its definition: each third of the projection attends within each window (its
    first half the query and key, the second the value), shifted windows rolled by the
    original's amounts."""
    parts = torch.split(gmsa.project_inp(x), gmsa.split, dim=1)
    outs = []
    for part, s in zip(parts, gmsa.window_sizes):
        if gmsa.shifts:
            part = torch.roll(part, (-s // 2, -s // 2), (2, 3))
        c = part.shape[1] // 2
        out = torch.zeros(part.shape[0], c, *part.shape[2:])
        for r in range(0, part.shape[2], s):
            for col in range(0, part.shape[3], s):
                tokens = part[:, :, r:r + s, col:col + s].flatten(2).transpose(1, 2)
                q, v = tokens[..., :c], tokens[..., c:]
                y = torch.softmax(q @ q.transpose(1, 2), dim=-1) @ v
                out[:, :, r:r + s, col:col + s] = y.transpose(1, 2).reshape(-1, c, s, s)
        if gmsa.shifts:
            out = torch.roll(out, (s // 2, s // 2), (2, 3))
        outs.append(out)
    return gmsa.project_out(torch.cat(outs, dim=1))


@pytest.mark.parametrize("shifts", [0, 1])
def test_window_attention_is_attention_within_each_window(shifts):
    torch.manual_seed(0)
    gmsa = GMSA(6, shifts, [2, 3, 6], calc_attn=True).eval()
    x = torch.rand(2, 6, 6, 12)
    with torch.no_grad():
        got, maps = gmsa(x)
        assert torch.allclose(got, _by_hand(gmsa, x), atol=1e-5)
    assert [m.shape for m in maps] == [(2 * 18, 4, 4), (2 * 8, 9, 9), (2 * 2, 36, 36)]


@pytest.mark.parametrize("name", ["elan", "qelan"])
def test_any_image_size(name):
    """Padded (reflect, as the original) to the windows' multiple and cropped back; images
    smaller than the padding, where the original stops, work too."""
    torch.manual_seed(0)
    params = {"window_sizes": [2, 4, 8], "m_elan": 2, "c_elan": 6}
    kwargs = {"num_metadata": 2} if name == "qelan" else {}
    model = build_model(name, params, scale=3, **kwargs).eval()
    for h, w in [(1, 1), (1, 6), (5, 3), (8, 8), (9, 17)]:
        x = torch.rand(2, 3, h, w)
        with torch.no_grad():
            y = model(x, torch.rand(2, 2)) if kwargs else model(x)
        assert y.shape == (2, 3, 3 * h, 3 * w) and torch.isfinite(y).all()
    for h, w in [(1, 1), (2, 7), (9, 17), (16, 24)]:
        x = torch.rand(1, 3, h, w)
        padded = pad_to_multiple(x, 8)
        assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
        assert torch.equal(padded[..., :h, :w], x)
        if -h % 8 < h and -w % 8 < w:  # the original's padding
            assert torch.equal(padded, torch.nn.functional.pad(x, (0, -w % 8, 0, -h % 8),
                                                               mode="reflect"))


def test_original_names_and_parameter_counts():
    """Names as the original's ELAN_blocks.py; counts at its defaults as its code gives them
    (its parameters() also counts the fixed shift kernels and mean shift, kept here as buffers
    of the same names: 174,984 values at the defaults)."""
    names = set(build_model("qelan", {"m_elan": 4, "c_elan": 6, "n_share": 1,
                                      "num_q_blocks": 1}, scale=2, num_metadata=3).state_dict())
    for key in ("sub_mean.weight", "sub_mean.bias", "add_mean.bias", "head.0.weight",
                "body.0.modules_lfe.lfe_0.conv0.shift_conv.weight",
                "body.0.modules_lfe.lfe_1.conv1.shift_conv.conv1x1.weight",
                "body.1.modules_gmsa.gmsa_0.project_inp.0.weight",
                "body.1.modules_gmsa.gmsa_1.project_inp.1.running_var",
                "body.0.modules_gmsa.gmsa_0.project_out.bias",
                "body.0.meta_attention.attribute_integrator.0.weight",
                "body.0.meta_attention.attribute_integrator.2.weight", "tail.0.weight"):
        assert key in names, key
    assert not any(n.startswith("body.1.meta_attention") for n in names)

    def count(name, params=None, **kw):
        return sum(p.numel() for p in build_model(name, params or {}, **kw).parameters())
    assert count("elan", scale=4) == 8_312_448
    assert count("elan", {"m_elan": 24, "c_elan": 60}, scale=4) == 646_848  # ELAN-light
    assert count("qelan", scale=4, num_metadata=10) == 8_937_768
    assert count("dan", {"mode": "v1QELAN"}, scale=4, num_metadata=10) == 9_226_364


def test_meta_attention_where_asked():
    torch.manual_seed(0)
    x, a, b = torch.rand(1, 3, 8, 8), torch.zeros(1, 2), torch.ones(1, 2)
    for params, blocks in (({}, [0, 1, 2]), ({"num_q_blocks": 2}, [0, 1]),
                           ({"num_q_blocks": 0}, []), ({"meta_block": "none"}, []),
                           ({"meta_placement": "first_pass"}, [0, 1, 2])):
        model = build_model("qelan", {"window_sizes": [2, 2, 4], "m_elan": 3, "c_elan": 6,
                                      **params}, scale=2, num_metadata=2).eval()
        assert [i for i, blk in enumerate(model.body) if blk.meta_attention is not None] == blocks
        with torch.no_grad():
            assert torch.equal(model(x, a), model(x, b)) == (not blocks), params


def test_bad_settings_are_named():
    assert dict(check_model_params("elan", {"c_elan": 8}))["c_elan"].startswith(
        "expected a multiple of 3")
    assert "window_sizes" in dict(check_model_params("elan", {"window_sizes": [4, 8]}))
    assert "num_q_blocks" in dict(check_model_params("qelan", {"num_q_blocks": -2}))
    with pytest.raises(ValueError, match="meta_block: 'da-layer' is not available"):
        build_model("qelan", {"meta_block": "da-layer"}, scale=2, num_metadata=2)
    with pytest.raises(ValueError, match="meta_placement: expected one of"):
        build_model("qelan", {"meta_placement": "middle"}, scale=2, num_metadata=2)


TINY = "window_sizes = [2, 2, 4]\nm_elan = 2\nc_elan = 6"


def test_elan_trains_and_exports(write_config, tmp_path):
    path = write_config(model="elan", params=TINY, num_epochs=1)
    assert train_main(["--parameters", str(path)]) == 0
    node = tmp_path / "Results" / "tiny"
    assert 10 < float(rows(node)[0]["val-PSNR"]) < 100
    # TorchScript compiles it (no tracing): the export is checked at two image sizes
    assert rumpy_main(["export-model", str(node), "--epoch", "1", "--format",
                       "torchscript"]) == 0


def test_qelan_trains_on_metadata(degraded, tmp_path):  # noqa: F811
    path = blind_toml(degraded, tmp_path, "qelan", num_epochs=1)
    path.write_text(path.read_text().replace("num_features = 8\nnum_blocks = 1", TINY))
    assert train_main(["--parameters", str(path)]) == 0
    (row,) = _summary(tmp_path / "Results" / "blind_qelan")
    assert math.isfinite(float(row["val-PSNR"]))


def test_dan_v1qelan_trains_blind(iso, tmp_path):  # noqa: F811
    params = (f"mode = 'v1QELAN'\nloop = 2\nkernel_size = 9\n{TINY}\nnum_q_blocks = 1\n"
              f"estimator_nf = 8\nestimator_blocks = 1")
    assert train(config(iso, tmp_path, params=params, epochs=1)) == 0
    (row,) = rows(tmp_path / "Results" / "dan")
    assert float(row["val-estimator-error"]) > 0 and math.isfinite(float(row["val-PSNR"]))
