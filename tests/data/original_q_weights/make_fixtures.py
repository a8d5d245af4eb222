"""Makes this folder's fixtures with the original tool's (RUMpy's) own code: each meta-attention
model built by its handler at a tiny size, its weights drawn at random (quantised to a few bits
per value so the compressed files stay small: exact in float32 either way), saved by the
handler's own save_model (the original's checkpoint file, `saved_models/train_model_1`, kept
here xz-compressed as <model>.pt.xz) and run on a random input and metadata (cases.pt.xz).
Not run by the tests, which need no original code.

    python tests/data/original_q_weights/make_fixtures.py /path/to/RUMpy [--out DIR]
        [--preset tiny|big]

/path/to/RUMpy is a checkout of github.com/um-dsrg/RUMpy (the folder holding its `rumpy`
package). Its package is also called `rumpy`, so run this in a process that has not imported
this project's. `--preset big` makes larger models (not committed) for a wider check:
`python tests/test_original_q_weights.py DIR` compares rumpy with them."""
from __future__ import annotations

import argparse
import collections
import collections.abc
import importlib.machinery
import lzma
import math
import shutil
import sys
import tempfile
import types
from pathlib import Path

import torch

MISSING = ("colorama", "toml", "moviepy", "einops", "timm")  # imported, unused by these models


class _Anything:
    def __init__(self, *args, **kwargs): pass
    def __call__(self, *args, **kwargs): return _Anything()
    def __getattr__(self, name): return _Anything()
    def __mro_entries__(self, bases): return (object,)


class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


class _StubFinder:
    """Empty modules for the original's imports that are not installed (only those)."""
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in MISSING:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        module = _Stub(spec.name)
        module.__path__ = []
        return module
    def exec_module(self, module): pass


def import_original(source: Path):
    """The original's handlers, with what its imports need on a machine without them."""
    if "rumpy" in sys.modules:
        raise SystemExit("this process has already imported a `rumpy` package")
    for op in ("nms", "qnms"):  # a torchvision build whose compiled ops are missing
        try:
            torch.library.define(f"torchvision::{op}",
                                 "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # defined already (a working torchvision)
    collections.Callable = collections.abc.Callable  # removed in Python 3.10, used there
    sys.meta_path.append(_StubFinder())
    sys.path.insert(0, str(source))
    from rumpy.SISR.models.attention_manipulators import handlers
    from rumpy.SISR.models.attention_manipulators.architectures import QHAN, QSAN
    from rumpy.SISR.models.SPARNet.handlers import QSPARNetHandler
    return handlers, QHAN, QSAN, QSPARNetHandler


SCHEDULER = dict(scheduler="cosine_annealing_warm_restarts",
                 scheduler_params={"t_mult": 1, "restart_period": 100, "lr_min": 1e-7})

# name -> (number of metadata values, the handler's keyword arguments, input size)
PRESETS = {
    "tiny": {
        "qrcan": (20, dict(n_feats=16, n_resgroups=1, n_resblocks=2, style="standard",
                           include_q_layer=True), (2, 3, 8, 7)),
        "qedsr": (3, dict(num_features=8, num_blocks=2, res_scale=0.1,
                          q_layer_nonlinearity=True), (2, 3, 8, 7)),
        # its last_conv takes 11 x n_feats channels: 10 groups only, unless replaced (below)
        "qhan": (10, dict(n_feats=16, n_resgroups=2, n_resblocks=1, include_q_layer=True),
                 (2, 3, 8, 7)),
        "qsan": (10, dict(n_feats=8, n_resgroups=1, n_resblocks=2, reduction=2), (2, 3, 8, 7)),
        "qsparnet": (10, dict(min_ch=8, max_ch=16, in_size=16, out_size=16, min_feat_size=8,
                              res_depth=0, bottleneck_size=64), (2, 3, 16, 16)),
    },
    "big": {
        "qrcan": (10, dict(n_feats=32, n_resgroups=3, n_resblocks=3, style="standard",
                           include_q_layer=True), (2, 3, 24, 20)),
        "qedsr": (20, dict(num_features=32, num_blocks=4, res_scale=0.1,
                           q_layer_nonlinearity=False), (2, 3, 24, 20)),
        "qhan": (10, dict(n_feats=16, n_resgroups=10, n_resblocks=2, include_q_layer=True),
                 (2, 3, 24, 20)),
        "qsan": (10, dict(), (2, 3, 24, 20)),  # the handler builds only its full size
        "qsparnet": (10, dict(), (2, 3, 128, 128)),  # Face-SPARNet's 128x128 network
    },
}


def handler_for(name, kwargs, num_metadata, save_dir, original):
    handlers, QHAN, QSAN, QSPARNetHandler = original
    common = dict(device=torch.device("cpu"), model_save_dir=str(save_dir), eval_mode=False,
                  lr=1e-4, scale=2, metadata_bypass_len=num_metadata, **SCHEDULER)
    if name == "qsparnet":
        return QSPARNetHandler(**common, **kwargs)
    cls = {"qrcan": handlers.QRCANHandler, "qedsr": handlers.QEDSRHandler,
           "qhan": handlers.QHANHandler, "qsan": handlers.QSANHandler}[name]
    if (name == "qsan" and kwargs) or (name == "qhan" and kwargs.get("n_resgroups") != 10):
        # QSANHandler builds QSAN at its default size whatever it is given, and QHAN's
        # last_conv is fixed at 11 x n_feats input channels (10 groups): build the
        # architecture at this size and hand it to the handler
        handler = cls(**common, **({} if name == "qsan" else dict(kwargs, n_resgroups=10)))
        if name == "qsan":
            handler.net = QSAN(scale=2, input_para=num_metadata, **kwargs)
        else:
            handler.net = QHAN(scale=2, num_metadata=num_metadata, **kwargs)
            groups, feats = kwargs["n_resgroups"], kwargs["n_feats"]
            handler.net.last_conv = torch.nn.Conv2d(feats * (groups + 1), feats, 3, 1, 1)
        handler.training_setup(1e-4, SCHEDULER["scheduler"], SCHEDULER["scheduler_params"],
                               None, torch.device("cpu"))
        return handler
    return cls(**common, **kwargs)


def randomise(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Every float tensor drawn afresh (the zero-initialised attention shares too) on a grid of
    2^-k steps, 17 levels a tensor: weights within about 1/sqrt(fan-in) (meta-attention's
    4 times that), biases and means within 1/8, norm scales and variances in [0.5, 1]."""
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            if not tensor.is_floating_point():
                continue
            levels = torch.randint(-8, 9, tensor.shape, generator=generator)
            if key.endswith("gamma"):
                values = torch.full(tensor.shape, 0.375)
            elif key.endswith("running_var") or (tensor.dim() == 1 and key.endswith("weight")):
                values = 0.75 + levels / 32
            elif key.endswith("conv_du.0.bias"):
                # channel attention's bottleneck is one unit at these widths: kept alive, or
                # the gate would be a constant and the comparison blind to it
                values = 0.25 + levels.abs() / 64
            elif tensor.dim() == 1:
                values = levels / 64
            else:
                bound = 1.0 / math.sqrt(math.prod(tensor.shape[1:]))
                if "attribute_integrator" in key:
                    bound *= 4  # metadata that moves the output more
                values = levels * 2.0 ** math.floor(math.log2(bound / 8))
            tensor.copy_(values)


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the original tool's source folder")
    parser.add_argument("--out", type=Path, default=here)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    args = parser.parse_args(argv)
    original = import_original(args.source.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(2024)
    cases = {}
    for name, (num_metadata, kwargs, size) in PRESETS[args.preset].items():
        with tempfile.TemporaryDirectory() as tmp:
            handler = handler_for(name, kwargs, num_metadata, tmp, original)
            randomise(handler.net, generator)
            handler.net.eval()
            handler.set_epoch(1)
            handler.save_model("train_model")  # saved_models/train_model_1 in a run
            with open(Path(tmp) / "train_model_1", "rb") as f, \
                    lzma.open(args.out / f"{name}.pt.xz", "wb", preset=9) as packed:
                shutil.copyfileobj(f, packed)
        x = torch.randint(0, 256, size, generator=generator) / 255.0
        metadata = torch.randint(0, 256, (size[0], num_metadata), generator=generator) / 255.0
        with torch.no_grad():
            # what its handlers' run_model hands the network: metadata as B x M x 1 x 1
            out = handler.net(x, metadata=metadata[:, :, None, None])
        cases[name] = {"input": x, "metadata": metadata, "output": out,
                       "original_kwargs": repr(kwargs)}
        print(f"{name}: {sum(p.numel() for p in handler.net.parameters())} parameters, "
              f"output {tuple(out.shape)}")
    with lzma.open(args.out / "cases.pt.xz", "wb", preset=9) as packed:
        torch.save(cases, packed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
