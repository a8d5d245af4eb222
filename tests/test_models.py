"""Every registered model runs forward at each scale it supports, with the right output size."""
from __future__ import annotations

import pytest
import torch

from rumpy.models import MODELS, build_model, check_model_params, model_tasks

TINY = {
    "srcnn": {"num_features": 8, "mid_features": 4},
    "vdsr": {"num_features": 8, "num_layers": 3},
    "edsr": {"num_features": 8, "num_blocks": 2},
    "rcan": {"num_groups": 2, "num_blocks": 2, "num_features": 16, "reduction": 4},
    "han": {"num_groups": 2, "num_blocks": 1, "num_features": 8, "reduction": 4},
    "san": {"num_groups": 2, "num_blocks": 1, "num_features": 8, "reduction": 4},
    "safmn": {"dim": 8, "num_blocks": 2},
    # windows of 2, 4 and 8: the 12 x 10 input is padded to 16 x 16 (tests/test_elan.py)
    "elan": {"window_sizes": [2, 4, 8], "m_elan": 2, "c_elan": 6},
    # conditioned on degradation metadata (forward(x, metadata)); tests/test_blind_models.py
    "srmd": {"num_layers": 3, "num_features": 8},
    "sftmd": {"num_features": 8, "num_blocks": 2},
    "qedsr": {"num_features": 8, "num_blocks": 2, "q_layer_nonlinearity": True},
    "qrcan": {"num_groups": 2, "num_blocks": 2, "num_features": 16, "reduction": 4},
    "qhan": {"num_groups": 2, "num_blocks": 1, "num_features": 8, "reduction": 4},
    "qsan": {"num_groups": 2, "num_blocks": 1, "num_features": 8, "reduction": 4},
    "qelan": {"window_sizes": [2, 4, 8], "m_elan": 2, "c_elan": 6, "n_share": 1},
    "rrdbnet": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},  # x2 and x4 (as published)
    # face SR on the upsampled image (tests/test_sparnet.py)
    "sparnet": {"min_ch": 4, "max_ch": 8, "in_size": 32, "out_size": 32, "res_depth": 0,
                "bottleneck_size": 16},
    "qsparnet": {"min_ch": 4, "max_ch": 8, "in_size": 32, "out_size": 32, "res_depth": 0,
                 "bottleneck_size": 16},
    # blind with its own metadata estimator (forward(x); tests/test_dan.py)
    "dan": {"mode": "v1QRCAN", "nf": 8, "loop": 2, "n_resgroups": 1, "n_resblocks": 1,
            "estimator_nf": 8, "estimator_blocks": 1},
    # blind on a frozen contrastive encoder (forward(x); tests/test_contrastive.py)
    "contrastiveblindqrcan": {"n_feats": 8, "n_resgroups": 2, "n_resblocks": 1, "reduction": 4},
}


def test_every_registered_sr_model_is_covered():
    # (the regression models are covered in test_regression_parts.py)
    assert {m for m in MODELS if "sisr" in model_tasks(m)} == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_shape_and_gradient(name, scale):
    conditioned = getattr(MODELS.get(name), "takes_metadata", False)
    estimates = getattr(MODELS.get(name), "estimates_metadata", False)
    if scale not in (getattr(MODELS.get(name), "supported_scales", None) or (scale,)):
        pytest.skip(f"{name} has no x{scale}")
    model = build_model(name, TINY[name], scale=scale,
                        **({"num_metadata": 3} if conditioned or estimates else {}))
    h, w = 12, 10
    x = torch.rand(2, 3, h, w)
    if model.pre_upsampled:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic")
    y = model(x, torch.rand(2, 3)) if conditioned else model(x)
    assert y.shape == (2, 3, h * scale, w * scale)
    if estimates:  # the estimator's gradient comes from its own loss on the code
        srs, codes = model(x, True)
        assert codes[-1].shape == (2, 3)
        y = srs[-1] + codes[-1].mean()
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_default_edsr_matches_paper_settings():
    model = build_model("edsr", {}, scale=2)
    assert model.head.out_channels == 64
    assert len(model.body) == 17  # 16 residual blocks + the closing convolution
    assert model.body[0].res_scale == 0.1


def test_bad_parameters_are_named():
    import rumpy.catalog  # noqa: F401  (tasks declare what they supply, as in `rumpy models`)
    problems = dict(check_model_params("rcan", {"num_group": 2, "reduction": "x", "scale": 2}))
    assert "did you mean 'num_groups'" in problems["num_group"]
    assert problems["reduction"] == "expected int for rcan, got 'x'"
    assert "not a parameter of rcan" in problems["scale"]  # the task supplies it
