"""Writes original_elan.pt: weights, inputs and outputs of the original RUMpy tool's ELAN, QELAN
and DANv1QELAN at tiny sizes, which tests/test_elan.py loads into rumpy's models (by name,
strict) and compares. Nothing of the original is copied here: it is imported from the checkout
given on the command line.

    python tests/data/original_elan/make_fixture.py --original /path/to/RUMpy \
        [--out tests/data/original_elan/original_elan.pt]

The original imports packages its models do not use (colorama, toml, moviepy, timm) and
torchvision; where they are missing, empty stand-ins are put in their place, and einops'
`rearrange` (which ELAN does use) by a plain reshape/permute equivalent. A torchvision build
whose compiled ops do not load gets their schemas declared first."""
from __future__ import annotations

import argparse
import math
import re
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _stand_ins() -> None:
    """Modules the original imports that this machine may lack."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        for op in ("nms", "qnms"):
            try:
                torch.library.define(f"torchvision::{op}",
                                     "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except Exception:
                pass
        for name in [n for n in sys.modules if n.startswith("torchvision")]:
            del sys.modules[name]
    def module(name: str, **attrs) -> None:
        if name in sys.modules:
            return
        try:
            __import__(name)
            return
        except Exception:
            pass
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        mod.__path__ = []  # a package, so submodules can be stood in too
        sys.modules[name] = mod

    class _Blank:
        def __getattr__(self, _):
            return ""

    module("colorama", Fore=_Blank(), Back=_Blank(), Style=_Blank(), init=lambda *a, **k: None)
    module("toml", load=None, loads=None, dump=None, dumps=None)
    for name in ("moviepy", "moviepy.video", "moviepy.video.io",
                 "moviepy.video.io.ImageSequenceClip"):
        module(name, ImageSequenceClip=None)
    for name in ("timm", "timm.models"):
        module(name)
    module("timm.models.layers", DropPath=None, to_2tuple=None, trunc_normal_=None)
    module("einops", rearrange=_rearrange)
    import collections
    import collections.abc
    for name in ("Callable", "Iterable", "Mapping", "MutableMapping", "Sequence"):
        if not hasattr(collections, name):  # the original imports them from collections
            setattr(collections, name, getattr(collections.abc, name))


def _rearrange(t: torch.Tensor, pattern: str, **sizes: int) -> torch.Tensor:
    """einops.rearrange for patterns of named axes and parenthesised groups (no ellipsis)."""
    def groups(side: str) -> list[list[str]]:
        return [tok.strip("()").split() if tok.startswith("(") else [tok]
                for tok in re.findall(r"\([^)]*\)|\S+", side)]
    left, right = (groups(s) for s in pattern.split("->"))
    known = dict(sizes)
    for group, dim in zip(left, t.shape, strict=True):
        missing = [n for n in group if n not in known]
        if missing:
            known[missing[0]] = dim // math.prod(known[n] for n in group if n in known)
    names = [n for g in left for n in g]
    order = [names.index(n) for g in right for n in g]
    t = t.reshape([known[n] for n in names]).permute(order)
    return t.reshape([math.prod(known[n] for n in g) for g in right])


def _randomise_norms(net: torch.nn.Module) -> None:
    """Batch-norm statistics and affine weights away from their identity start, so the
    comparison sees them used."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)


# The cases: the original's keyword arguments, and rumpy's parameters for the same network.
# Odd sides and windows on purpose: the original pads (reflect) to the windows' least common
# multiple and crops back, and rolls an odd window one pixel further than it rolls it back.
CASES = {
    "elan": {"scale": 2, "input": (1, 11, 13),
             "original": {"window_sizes": [3, 2, 4], "m_elan": 2, "c_elan": 12, "n_share": 0,
                          "r_expand": 2},
             "rumpy": {"window_sizes": [3, 2, 4], "m_elan": 2, "c_elan": 12, "n_share": 0,
                       "r_expand": 2}},
    "qelan": {"scale": 3, "input": (2, 7, 9), "num_metadata": 3,
              "original": {"window_sizes": [2, 4, 4], "m_elan": 4, "c_elan": 12, "n_share": 1,
                           "r_expand": 1, "meta_block": "q-layer", "num_q_blocks": 1,
                           "num_layers_in_q_block": 2, "meta_placement": "first_pass"},
              "rumpy": {"window_sizes": [2, 4, 4], "m_elan": 4, "c_elan": 12, "n_share": 1,
                        "r_expand": 1, "meta_block": "q-layer", "num_q_blocks": 1,
                        "num_layers_in_q_block": 2, "meta_placement": "first_pass"}},
    # DANv1QELAN with a small estimator (rumpy's estimator_nf / estimator_blocks; the original
    # builds DAN's own Estimator class at 64 features and 5 blocks)
    "dan_v1qelan": {"scale": 2, "input": (1, 9, 10), "num_metadata": 4, "kernel_size": 5,
                    "loop": 2, "estimator": {"nf": 32, "num_blocks": 1},
                    "original": {"window_sizes": [2, 2, 4], "m_elan": 3, "c_elan": 6,
                                 "meta_block": "q-layer", "num_q_blocks": 2,
                                 "num_layers_in_q_block": 1},
                    "rumpy": {"mode": "v1QELAN", "loop": 2, "kernel_size": 5,
                              "window_sizes": [2, 2, 4], "m_elan": 3, "c_elan": 6,
                              "meta_block": "q-layer", "num_q_blocks": 2,
                              "num_layers_in_q_block": 1, "estimator_nf": 32,
                              "estimator_blocks": 1}},
}


def build_original(name: str, case: dict, tmp: Path) -> torch.nn.Module:
    from rumpy.SISR.models.advanced.architectures import ELAN
    from rumpy.SISR.models.attention_manipulators.architectures import QELAN
    from rumpy.SISR.models.blur_kernel_blind_sr.DANv1 import Estimator
    from rumpy.SISR.models.blur_kernel_blind_sr.DANv1Models import DANv1QELAN

    if name == "elan":
        return ELAN(scale=case["scale"], **case["original"])
    if name == "qelan":
        return QELAN(scale=case["scale"], num_metadata=case["num_metadata"], **case["original"])
    k, m = case["kernel_size"], case["num_metadata"]
    torch.save(torch.randn(k * k, m) / k, tmp / "pca_matrix.pth")  # a PCA basis's shape
    net = DANv1QELAN(upscale=case["scale"], input_para=m, kernel_size=k, loop=case["loop"],
                     pca_matrix_path=str(tmp / "pca_matrix.pth"), **case["original"])
    net.Estimator = Estimator(out_nc=m, scale=case["scale"], kernel_size=k, **case["estimator"])
    return net


def pack(state: dict) -> dict:
    """A state dict as one half-precision tensor and its names, shapes and dtypes (a file of
    many small tensors is mostly headers); tests/test_elan.py unpacks it."""
    return {"names": list(state), "shapes": [list(v.shape) for v in state.values()],
            "dtypes": [str(v.dtype).removeprefix("torch.") for v in state.values()],
            "flat": torch.cat([v.detach().flatten().half() for v in state.values()])}


def generate(original: Path, seed: int = 0) -> dict:
    _stand_ins()
    sys.path.insert(0, str(original))
    import tempfile
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            torch.manual_seed(seed)
            net = build_original(name, case, Path(tmp))
            _randomise_norms(net)
            net.eval()
            with torch.no_grad():  # values half precision holds exactly: stored in 2 bytes
                for value in net.state_dict().values():
                    value.copy_(value.half().to(value.dtype))
            x = torch.rand(*case["input"][:1], 3, *case["input"][1:]).half().float()
            entry = {"scale": case["scale"], "params": case["rumpy"], "input": x.half(),
                     "weights": pack(net.state_dict())}
            with torch.no_grad():
                if name == "elan":
                    entry["output"] = net(x)
                elif name == "qelan":
                    meta = torch.rand(x.shape[0], case["num_metadata"]).half().float()
                    entry["num_metadata"], entry["metadata"] = case["num_metadata"], meta.half()
                    entry["output"] = net(x, meta[:, :, None, None])  # its handler's 1x1 map
                else:
                    srs, codes = net(x)
                    entry["num_metadata"] = case["num_metadata"]
                    entry["output"], entry["codes"] = torch.stack(srs), torch.stack(codes)
            out[name] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True,
                        help="a checkout of the original RUMpy (the folder holding rumpy/)")
    parser.add_argument("--out", type=Path, default=HERE / "original_elan.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = generate(args.original.resolve())
    torch.save(data, args.out)
    print(f"{args.out}: {args.out.stat().st_size} bytes; "
          + ", ".join(f"{k}: {tuple(v['output'].shape)}" for k, v in data.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
