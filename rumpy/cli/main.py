"""rumpy: helper commands around train_sisr (prepare-data, models, tree)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..logs import setup_console

log = logging.getLogger("rumpy")


def _prepare_data(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_lr

    hr = Path(args.hr)
    if not hr.is_dir():
        log.error("--hr: folder not found: %s", hr)
        return 2
    try:
        prepare_lr(hr, Path(args.out), args.scale, args.naming,
                   Path(args.hr_out) if args.hr_out else None)
    except (ValueError, OSError) as exc:
        log.error("%s", exc)
        return 2
    return 0


def _models(args: argparse.Namespace) -> int:
    from ..models import MODELS
    from ..models.registry import model_params

    for name in MODELS:
        cls = MODELS.get(name)
        params = ", ".join(f"{k}={d!r}" for k, (_, d) in model_params(name).items())
        scales = cls.supported_scales or "any"
        pre = "bicubic-upsampled input" if cls.pre_upsampled else "LR input"
        print(f"{name:8s} scales {scales}; {pre}; {params}")
    return 0


def _tree(args: argparse.Namespace) -> int:
    from ..tree.render import render_tree

    try:
        print(render_tree(Path(args.experiment)))
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rumpy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-data", help="make an LR folder from an HR folder (bicubic)")
    prep.add_argument("--hr", required=True, help="folder of HR images")
    prep.add_argument("--out", required=True, help="folder to write LR images to")
    prep.add_argument("--scale", type=int, required=True, choices=(2, 3, 4, 8))
    prep.add_argument("--naming", choices=("div2k", "same"), default="div2k",
                      help="'div2k': 0001x2.png (default); 'same': keep the HR file name")
    prep.add_argument("--hr-out", help="also write the (cropped) HR images here")
    prep.set_defaults(func=_prepare_data)
    models = sub.add_parser("models", help="list registered models and their parameters")
    models.set_defaults(func=_models)
    tree = sub.add_parser("tree", help="show an experiment's result tree")
    tree.add_argument("experiment", help="the run folder, e.g. Results/my_run")
    tree.set_defaults(func=_tree)
    args = parser.parse_args(argv)
    setup_console()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
