"""The commands: `rumpy eval`, `eval_sisr` (the same, for super-resolution nodes) and
`rumpy export-model`. Registered on rumpy's parser by `add_parsers`; torch is imported only when
a command runs, so `rumpy --help` stays instant."""
from __future__ import annotations

import argparse
import logging
import sys

from .args import Parser, epoch, non_negative, positive

log = logging.getLogger("rumpy")


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", help="a run folder (Results/<experiment>) or a branch folder in it")
    parser.add_argument("--epoch", type=epoch, default="best", metavar="best|last|N",
                        help="the saved epoch to evaluate (default: best by the run's "
                             "best_load_metric)")
    parser.add_argument("--data", metavar="TOML",
                        help="a TOML with [data.eval_sets.NAME] tables (default: the node's own "
                             "eval sets)")
    parser.add_argument("--save-images", action="store_true",
                        help="also save every SR output as PNG under eval/epoch_<N>/<set>/")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="average the outputs for the 8 flips/rotations of each image (SR)")
    parser.add_argument("--tile", type=positive, metavar="N",
                        help="run images in N x N LR-pixel tiles (SR; for images that do not fit)")
    parser.add_argument("--tile-overlap", type=non_negative, default=32, metavar="N",
                        help="LR pixels of context around each tile (default 32); the result "
                             "equals whole-image inference when the model's receptive field "
                             "fits in it")
    parser.add_argument("--metadata-from", dest="metadata_from", metavar="NODE",
                        help="conditioned SR models: use the degradation metadata this predictor "
                             "node predicts from each LR image (blind evaluation)")
    _add_weights_argument(parser)
    parser.add_argument("--gpu", choices=("off", "single"), default="off",
                        help="'single' runs on cuda:0 (default off)")


def _add_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help="a node trained with training.ema_decay: its EMA weights (the "
                             "default: what it validated) or the raw ones")


def os_error(command: str, exc: OSError) -> str:
    """An OSError as a line that says which file and what went wrong, not '[Errno 2] ...'."""
    what = exc.strerror or str(exc)
    where = f"{exc.filename}: " if exc.filename else ""
    also = f" (and {exc.filename2})" if getattr(exc, "filename2", None) else ""
    return f"{command}: {where}{what}{also}"


def _device(args) -> str:
    return "cuda" if args.gpu == "single" else "cpu"


def _run_eval(args: argparse.Namespace, only_task: str | None = None) -> int:
    from ..config import ConfigError
    from ..inference.evaluate import evaluate_node, report_lines
    from ..inference.load import InferenceError

    if args.gpu == "single":
        import torch
        if not torch.cuda.is_available():
            log.error("--gpu single but CUDA is not available on this machine; use --gpu off")
            return 2
    try:
        report = evaluate_node(args.node, epoch=args.epoch, data=args.data,
                               save_images=args.save_images, self_ensemble=args.self_ensemble,
                               tile=args.tile, tile_overlap=args.tile_overlap,
                               device=_device(args), only_task=only_task,
                               metadata_from=getattr(args, "metadata_from", None),
                               weights=args.weights)
    except (InferenceError, ConfigError, OSError) as exc:  # OSError: an unreadable image
        log.error("%s", exc)
        return 2
    except OSError as exc:  # an image or file that vanished or cannot be read meanwhile
        log.error("%s", os_error("rumpy eval", exc))
        return 2
    for line in report_lines(report):
        print(line)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..inference.export import export_model
    from ..inference.load import InferenceError

    try:
        report = export_model(args.node, epoch=args.epoch, fmt=args.format, out_dir=args.output,
                              weights=args.weights)
    except (InferenceError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:  # a file that vanished or cannot be written meanwhile
        log.error("%s", os_error("rumpy export-model", exc))
        return 2
    shapes = ", ".join("x".join(map(str, s)) for s in report.sizes)
    print(f"{report.file}: epoch {report.epoch}, checked on {report.checked_on} "
          f"(input {shapes}): largest absolute difference from PyTorch {report.max_abs_diff:.3g}")
    if not report.passed:
        hint = (" (operations whose sizes follow the input, such as adaptive pooling, may be "
                "fixed at the example's size in ONNX; try --format torchscript)"
                if report.format == "onnx" else "")
        log.error("%s does not reproduce the model: it differs by %.3g, more than %.3g%s; see "
                  "network.json", report.file, report.max_abs_diff, report.tolerance, hint)
        return 1
    return 0


def add_parsers(sub) -> None:
    """`eval` and `export-model` on rumpy's subcommand parser."""
    ev = sub.add_parser("eval", help="score a saved epoch of a node on test sets "
                                     "(eval/epoch_<N>/: per-sample and average metrics)")
    _add_eval_arguments(ev)
    ev.set_defaults(func=_run_eval)
    ex = sub.add_parser("export-model", help="export a saved epoch as TorchScript or ONNX, with "
                                             "network.txt and network.json (its contract)")
    ex.add_argument("node", help="a run folder (Results/<experiment>) or a branch folder in it")
    ex.add_argument("--epoch", type=epoch, default="best", metavar="best|last|N")
    ex.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    _add_weights_argument(ex)
    ex.add_argument("-o", "--output", metavar="DIR",
                    help="folder to write to (default: <node>/export/epoch_<N>/)")
    ex.set_defaults(func=_run_export)


def eval_sisr_main(argv: list[str] | None = None) -> int:
    """`eval_sisr`: rumpy eval for super-resolution nodes."""
    from ..logs import setup_console

    parser = Parser(
        prog="eval_sisr", description="Score a saved epoch of a super-resolution node on test "
        "sets (its own eval sets, or those of --data), as training-time validation does.")
    _add_eval_arguments(parser)
    args = parser.parse_args(argv)
    setup_console()
    return _run_eval(args, only_task="sisr")


if __name__ == "__main__":
    sys.exit(eval_sisr_main())
