"""rumpy: train any task, and the commands around training (prepare-data, models, tasks, tree,
export, plot, clean) and around trained models (eval, export-model, extract)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..logs import setup_console
from .args import Parser, integer
from .args import positive as epoch_number

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


def _load_plugins(args: argparse.Namespace) -> bool:
    """The plugins named with --plugins (and installed entry points), imported to be listed."""
    from ..plugins import PluginError, load_plugins

    try:
        load_plugins(list(args.plugins or []), Path.cwd())
    except PluginError as exc:
        log.error("--plugins: %s", exc)
        return False
    return True


def _models(args: argparse.Namespace) -> int:
    from .. import catalog  # noqa: F401  (every package task, so each model's inputs are known)
    from ..models import MODELS, model_params

    if not _load_plugins(args):
        return 2
    for name in MODELS:
        for tasks, cls, _ in MODELS.all(name):
            params = ", ".join(f"{k}={d!r}" for k, (_, d) in model_params(name, (), tasks).items())
            scales = getattr(cls, "supported_scales", None)
            if "sisr" in (tasks or ()):
                pre = "bicubic-upsampled input" if getattr(cls, "pre_upsampled", False) \
                    else "LR input"
                about = f"scales {scales or 'any'}; {pre}"
                if getattr(cls, "takes_metadata", False):
                    about += " + degradation metadata"
            else:
                about = "inputs from the data"
            origin = MODELS.origin(name, tasks)
            where = "" if origin == "rumpy" else f" [plugin {origin}]"
            print(f"{name:13s} {'/'.join(tasks or ('any',)):10s} {about}; {params}{where}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from ..data.kinds import DATASET_KINDS
    from ..tasks import TASKS

    if not _load_plugins(args):
        return 2
    for name in TASKS:
        task = TASKS.get(name)
        origin = TASKS.origin(name)
        print(f"{name}" + ("" if origin == "rumpy" else f" [plugin {origin}]"))
        for kind in task.dataset_kinds:
            print(f"  data type {kind!r}: {DATASET_KINDS.get(kind, task.scopes()).doc}")
        print(f"  models: {', '.join(task.model_names())}")
        if "training.metrics" in task.config_defaults:
            print(f"  metrics: {', '.join(task.metric_names())}")
        else:
            print("  metrics: the model's own (loss, metrics and metric_directions)")
        print(f"  baseline: {task.baseline_name}")
    return 0


def _tree(args: argparse.Namespace) -> int:
    from ..tree.render import render_tree

    try:
        print(render_tree(Path(args.experiment)))
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return 0


def _output_problem(path: Path) -> str | None:
    """Why `path` may not be written by export/plot: a folder, or a place inside a run folder
    (where it could replace the run's own files)."""
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    for folder in path.resolve().parents:
        if (folder / "config.toml").is_file() and (folder / "saved_models").is_dir():
            return f"{path} is inside the run folder {folder}; write it elsewhere"
    return None


def _export(args: argparse.Namespace) -> int:
    from ..results.export import best_table, epochs_table, long_table, per_image_table

    folder = Path(args.folder)
    try:
        if args.per_image is not None:
            table = per_image_table(folder, args.per_image)
        else:
            table = epochs_table(folder)
            if args.best:
                table = best_table(table, args.best, args.include_inherited)
            elif args.format == "long":
                table = long_table(table)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        log.error("%s", exc.args[0] if exc.args else exc)
        return 2
    if args.output:
        from ..utils.atomic import atomic_open
        problem = _output_problem(Path(args.output))
        if problem:
            log.error("-o: %s", problem)
            return 2
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(Path(args.output), "w", newline="") as handle:
            table.to_csv(handle, index=False)
        log.info("wrote %d rows to %s", len(table), args.output)
    else:
        try:
            table.to_csv(sys.stdout, index=False)
        except BrokenPipeError:  # `rumpy export ... | head` is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ..results.compare import plot_nodes

    problem = _output_problem(Path(args.output))
    if problem:
        log.error("-o: %s", problem)
        return 2
    try:
        drawn = plot_nodes(Path(args.experiment), args.metric, Path(args.output), args.nodes)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        log.error("%s", exc.args[0] if exc.args else exc)
        return 2
    log.info("wrote %s (%s)", args.output, ", ".join(drawn) if len(drawn) <= 12 else
             f"{len(drawn)} nodes")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..report.page import write_report

    out = Path(args.output)
    problem = _output_problem(out)
    if problem:
        log.error("-o: %s", problem)
        return 2
    try:
        data = write_report(Path(args.folder), out, args.images, samples=not args.no_samples)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc.args[0] if exc.args else exc)
        return 2
    log.info("wrote %s (%d nodes, %d sweeps)", out, len(data["nodes"]), len(data["sweeps"]))
    return 0


def _track(args: argparse.Namespace) -> int:
    from ..tracking.replay import ReplayError, replay

    try:
        lines = replay(Path(args.folder), args.to, args.uri)
    except ReplayError as exc:
        log.error("%s", exc)
        return 2
    for line in lines:
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


def _dispatch(argv: list[str] | None) -> int:
    in_script = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from .train import DISK_FULL, main as train_main
        code = train_main(argv[1:], prog="rumpy train")
        if code == DISK_FULL and in_script:  # as train.script(): Aim's exit cleanup would hang
            logging.shutdown()
            os._exit(code)
        return code
    if argv[:1] == ["sweep"]:
        from .sweep import sweep_main
        return sweep_main(argv[1:])
    parser = Parser(prog="rumpy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-data", help="make an LR folder from an HR folder (bicubic)")
    prep.add_argument("--hr", required=True, help="folder of HR images")
    prep.add_argument("--out", required=True, help="folder to write LR images to")
    prep.add_argument("--scale", type=integer, required=True, choices=(2, 3, 4, 8))
    prep.add_argument("--naming", choices=("div2k", "same"), default="div2k",
                      help="'div2k': 0001x2.png (default); 'same': keep the HR file name")
    prep.add_argument("--hr-out", help="also write the (cropped) HR images here")
    prep.set_defaults(func=_prepare_data)
    models = sub.add_parser("models", help="list registered models and their parameters")
    models.set_defaults(func=_models)
    tasks = sub.add_parser("tasks", help="list tasks with their data types, models and metrics")
    tasks.set_defaults(func=_tasks)
    for listing in (models, tasks):
        listing.add_argument("--plugins", nargs="+", metavar="FILE|MODULE",
                             help="also list what these plugins register (files relative to "
                                  "the working directory, or module names)")
    sub.add_parser("train", help="train any task from a TOML config (same flags as train_sisr; "
                                 "rumpy train --help)", add_help=False)
    tree = sub.add_parser("tree", help="show an experiment's result tree")
    tree.add_argument("experiment", help="the run folder, e.g. Results/my_run")
    tree.set_defaults(func=_tree)
    export = sub.add_parser("export", help="metrics of every node under a folder, as CSV")
    export.add_argument("folder", help="a Results folder or one experiment's run folder")
    export.add_argument("-o", "--output", help="CSV file to write (default: standard output)")
    export.add_argument("--format", choices=("wide", "long"), default="wide",
                        help="wide: a row per node and epoch; long: a row per node, epoch, metric")
    export.add_argument("--best", metavar="METRIC",
                        help="one row per node: its best epoch by METRIC (e.g. val-PSNR)")
    export.add_argument("--include-inherited", action="store_true",
                        help="with --best: let a branch's best be an epoch it inherited")
    export.add_argument("--per-image", type=epoch_number, metavar="EPOCH",
                        help="per-image metrics of EPOCH instead")
    export.set_defaults(func=_export)
    plot = sub.add_parser("plot", help="overlay nodes' curves of one metric in a PNG")
    plot.add_argument("experiment", help="the run folder, e.g. Results/my_run")
    plot.add_argument("--metric", default="val-PSNR",
                      help="summary column; PSNR means val-PSNR (default val-PSNR)")
    plot.add_argument("--nodes", nargs="+", metavar="BRANCH",
                      help="nodes to draw ('.' = the root); default: all")
    plot.add_argument("-o", "--output", default="compare.png")
    plot.set_defaults(func=_plot)
    report = sub.add_parser("report", help="a tree, sweep or Results folder as one "
                                           "self-contained HTML page")
    report.add_argument("folder", help="a run folder (its subtree), or a folder of runs/sweeps")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    report.add_argument("--images", nargs="+", metavar="NAME",
                        help="sample images to show (e.g. chelsea_chelsea_0); default: the first")
    report.add_argument("--no-samples", action="store_true", help="leave sample images out")
    report.set_defaults(func=_report)
    track = sub.add_parser("track", help="replay run folders into a tracker (idempotent)")
    track.add_argument("folder", help="a run folder (its subtree), or a folder of runs")
    track.add_argument("--to", required=True, choices=("mlflow", "tensorboard", "aim"))
    track.add_argument("--uri", help="mlflow: tracking URI (default: the node's mlflow_uri, or "
                                     "sqlite:///<Results>/mlflow.db); aim: the repository folder "
                                     "(default: the node's aim_home)")
    track.set_defaults(func=_track)
    from .evaluate import add_parsers as add_inference_parsers  # eval, export-model
    add_inference_parsers(sub)
    from .sweep import add_parsers as add_sweep_parsers  # sweep, table
    add_sweep_parsers(sub)
    from .degrade import add_parsers as add_degrade_parsers  # degrade
    add_degrade_parsers(sub)
    from . import clean, extract  # extract, clean: models out of the tree, retention after it
    extract.add_parsers(sub)
    clean.add_parsers(sub)
    args = parser.parse_args(argv)
    setup_console()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
