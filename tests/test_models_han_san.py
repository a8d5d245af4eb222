"""HAN and SAN: built as their papers describe (parameter counts worked out from the
architectures), the attention where it should enter, SOCA's matrix square root, SAN's
max_combined_im_size bounding memory without changing the output, and both through the product:
train_sisr, continue, rumpy eval, export-model."""
from __future__ import annotations

import csv

import pytest
import torch

from rumpy.cli.main import main as rumpy_main
from rumpy.cli.train import main as train_main
from rumpy.models import build_model, check_model_params
from rumpy.models import san as san_module
from rumpy.models.han import LayerAttention
from rumpy.models.san import covariance, sqrtm_newton_schulz

SMALL = {"han": {"num_groups": 2, "num_blocks": 2, "num_features": 16, "reduction": 4},
         "san": {"num_groups": 2, "num_blocks": 2, "num_features": 16, "reduction": 4}}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(inp: int, out: int, k: int) -> int:
    return inp * out * k * k + out


def _upsampler(scale: int, f: int) -> int:  # sub-pixel: a conv to 4f per x2 stage, 9f for x3
    return _conv(f, 9 * f, 3) if scale == 3 else {2: 1, 4: 2, 8: 3}[scale] * _conv(f, 4 * f, 3)


@pytest.mark.parametrize("name", ["han", "san"])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_forward_at_every_scale(name, scale):
    model = build_model(name, SMALL[name], scale=scale)
    x = torch.rand(2, 3, 9, 7)  # odd sides: SAN's regions are unequal halves
    y = model(x)
    assert y.shape == (2, 3, 9 * scale, 7 * scale)
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_paper_sizes():
    f, r = 64, 16
    rcab = 2 * _conv(f, f, 3) + _conv(f, f // r, 1) + _conv(f // r, f, 1)
    # HAN: RCAN (10 groups of 20 RCABs and a conv, the body's closing conv), LAM (one weight)
    # over the 11 feature maps fused by a 3x3 conv from 11 x 64 channels, CSAM (a 3x3x3 conv
    # and one weight), the 3x3 conv fusing LAM's and CSAM's outputs
    for scale in (2, 4):
        han = (_conv(3, f, 3) + 10 * (20 * rcab + _conv(f, f, 3)) + _conv(f, f, 3)
               + 1 + _conv(11 * f, f, 3) + (1 * 1 * 27 + 1) + 1
               + _conv(2 * f, f, 3) + _upsampler(scale, f) + _conv(f, 3, 3))
        assert _count(build_model("han", {}, scale=scale)) == han
    assert _count(build_model("han", {}, scale=4)) == 16_071_745  # the paper's 16.07M (x4)
    # SAN: 20 LSRAGs of 10 plain residual blocks, SOCA (64 -> 4 -> 64) and a conv; one shared
    # region-level non-local block (three 1x1 embeddings to 64 / 8 channels and one back);
    # the share-source skip's weight
    lsrag = 10 * 2 * _conv(f, f, 3) + _conv(f, f // r, 1) + _conv(f // r, f, 1) + _conv(f, f, 3)
    non_local = 3 * _conv(f, f // 8, 1) + _conv(f // 8, f, 1)
    for scale in (2, 4):
        san = (_conv(3, f, 3) + non_local + 20 * lsrag + 1 + _upsampler(scale, f)
               + _conv(f, 3, 3))
        assert _count(build_model("san", {}, scale=scale)) == san
    assert _count(build_model("san", {}, scale=2)) == 15_674_732  # the paper's 15.7M


def test_layer_attention_sees_every_group():
    torch.manual_seed(0)  # the size of the change depends on the weights: fixed, not by chance
    model = build_model("han", SMALL["han"], scale=2)
    seen = []
    model.layer_attention.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        plain = model(x)
        hook = model.groups[0].register_forward_hook(lambda m, args, out: out * 3 + 1)
        model(x)
        hook.remove()
    assert seen[0].shape == (1, 3, 16, 8, 8)  # 2 groups and the body's closing conv
    before, after = (model.layer_attention.attention(s)[0] for s in seen)
    assert torch.allclose(before.sum(-1), torch.ones(3))
    assert (after - before).abs().max() > 1e-3
    # the module alone: changing map 1 changes its row and column of weights
    lam = LayerAttention()
    stacked = torch.rand(1, 4, 2, 3, 3)
    changed = stacked.clone()
    changed[:, 1] *= 1.5
    diff = (lam.attention(changed) - lam.attention(stacked))[0].abs()
    assert diff[1].max() > 1e-3 and diff[:, 1].max() > 1e-3
    # both attentions start as the identity (weights 0, as the authors) and enter the output
    with torch.no_grad():
        for module in (model.layer_attention, model.channel_spatial_attention):
            module.gamma.fill_(0.5)
            assert (model(x) - plain).abs().max() > 1e-4
            module.gamma.fill_(0.0)
            assert torch.equal(model(x), plain)


def test_soca_square_root():
    torch.manual_seed(0)
    # a well-conditioned covariance (4 channels of independent noise): 5 iterations suffice
    cov = covariance(torch.randn(2, 4, 32, 32))
    root = sqrtm_newton_schulz(cov, 5)
    assert torch.allclose(root @ root, cov, atol=1e-3)
    assert torch.allclose(root, root.transpose(1, 2), atol=1e-5)
    # wider (64 channels, the paper's width): the trace-normalised iteration needs more steps
    mix = torch.eye(64) + 0.1 * torch.randn(64, 64)
    cov = covariance(torch.einsum("ij,bjhw->bihw", mix, torch.randn(1, 64, 40, 40)))
    root = sqrtm_newton_schulz(cov, 30)
    values, vectors = torch.linalg.eigh(cov.double())
    exact = (vectors * values.clamp_min(0).sqrt().unsqueeze(1)) @ vectors.transpose(1, 2)
    assert torch.allclose(root @ root, cov, atol=1e-4)
    assert torch.allclose(root.double(), exact, atol=1e-3)
    # differentiable with autograd, and a constant map (covariance 0) gives a root of 0
    a = covariance(torch.randn(1, 3, 6, 6, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda m: sqrtm_newton_schulz(m, 5), (a,))
    flat = sqrtm_newton_schulz(covariance(torch.ones(1, 8, 4, 4)), 5)
    assert torch.equal(flat, torch.zeros_like(flat))


def test_max_combined_im_size_bounds_the_attention_not_the_result(monkeypatch):
    torch.manual_seed(1)
    whole = build_model("san", SMALL["san"], scale=2)
    with torch.no_grad():  # the non-local projection and the skip start at 0: make them act
        for p in whole.non_local.block.out.parameters():
            p.normal_(0, 0.2)
        whole.gamma.fill_(0.5)
    capped = build_model("san", {**SMALL["san"], "max_combined_im_size": 40}, scale=2)
    capped.load_state_dict(whole.state_dict())
    blocks = []
    real_softmax = torch.softmax
    monkeypatch.setattr(san_module.torch, "softmax",
                        lambda t, dim: blocks.append(t.shape) or real_softmax(t, dim=dim))
    x = torch.rand(1, 3, 16, 14)
    with torch.no_grad():
        reference = whole(x)
        assert len(blocks) == 8 and blocks[0] == (1, 56, 56)  # 2 x 4 regions of 8 x 7, whole
        blocks.clear()
        out = capped(x)
    # (40 // 4)^2 = 100 attention entries a block: one query row of 56 keys at a time
    assert {b for b in blocks} == {(1, 1, 56)} and len(blocks) == 2 * 4 * 56
    assert (out - reference).abs().max() < 1e-5


def test_ranges_are_checked():
    assert check_model_params("san", {"num_features": 4}) == [
        ("num_features", "expected an integer >= 8 for san, got 4")]
    assert check_model_params("san", {"max_combined_im_size": 0})[0][0] == "max_combined_im_size"
    assert "did you mean 'num_groups'" in dict(check_model_params("han", {"num_group": 2}))[
        "num_group"]
    assert check_model_params("han", {"num_features": 8, "reduction": 16})[0][0] == "reduction"


TINY = {"han": "num_groups = 2\nnum_blocks = 1\nnum_features = 8\nreduction = 4",
        # a cap small enough that validation's 20 x 20 LR images are attended in blocks
        "san": "num_groups = 2\nnum_blocks = 1\nnum_features = 8\nreduction = 4\n"
               "max_combined_im_size = 100"}


@pytest.mark.parametrize("name", ["han", "san"])
def test_trains_continues_evaluates_and_exports(name, write_config, tmp_path):
    path = write_config(model=name, params=TINY[name], num_epochs=1)
    assert train_main(["--parameters", str(path)]) == 0
    path.write_text(path.read_text().replace("num_epochs = 1", "num_epochs = 2"))
    assert train_main(["--parameters", str(path), "--continue_from_epoch", "last"]) == 0
    node = tmp_path / "Results" / "tiny"
    with open(node / "result_outputs" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(10 < float(r["val-PSNR"]) < 100 for r in rows)
    assert rumpy_main(["eval", str(node), "--epoch", "2"]) == 0
    with open(node / "eval" / "epoch_2" / "average_metrics.csv", newline="") as f:
        scores = next(csv.DictReader(f))
    assert float(scores["PSNR"]) == pytest.approx(float(rows[1]["val-PSNR"]), abs=1e-6)
    assert rumpy_main(["export-model", str(node), "--epoch", "2", "--format", "torchscript"]) == 0
    assert (node / "export" / "epoch_2" / "model.pt").is_file()
