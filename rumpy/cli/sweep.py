"""`rumpy sweep FILE` (run or resume every cell of a grid x seeds sweep) and `rumpy table FOLDER`
(mean ± std per setting)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .args import Parser, non_negative, positive

log = logging.getLogger("rumpy")


def _sweep(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..sweep.launch import ClusterOptions, launcher_problem, run_local, run_submitit
    from ..sweep.run import ManifestError, status_lines, write_manifest
    from ..sweep.spec import read_sweep

    try:
        sweep = read_sweep(Path(args.file), tuple(args.cfg_default), tuple(args.overrides))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if (args.promote is None) != (args.num_epochs is None):
        log.error("--promote TRIAL and --num_epochs N go together")
        return 2
    if args.promote is not None and sweep.search is None:
        log.error("--promote: %s is a grid, not a search", args.file)
        return 2
    problem = None if args.status or args.promote is not None else \
        launcher_problem(args.launcher)
    if problem:
        log.error("%s", problem)
        return 2
    try:
        if args.status:
            for line in status_lines(sweep):
                print(line)
            return 0
        write_manifest(sweep)
    except (ConfigError, ManifestError) as exc:
        log.error("%s", exc)
        return 2
    if args.promote is not None:
        from ..sweep.search_run import promote_trial

        code = promote_trial(sweep, args.promote, args.num_epochs)
        if code in (0, 1) and not args.no_table:
            _table_of(sweep.folder, None, "best", None)
        return code
    if sweep.search is not None:
        log.info("sweep %s: a search of %d trials x %d seeds in %s", sweep.name,
                 sweep.search.n_trials, len(sweep.seeds), sweep.folder)
    else:
        log.info("sweep %s: %d cells (%d settings x %d seeds) in %s", sweep.name,
                 len(sweep.cells), len(sweep.cells) // len(sweep.seeds), len(sweep.seeds),
                 sweep.folder)
    if args.launcher == "local":
        code = run_local(sweep.folder, args.workers)
    else:
        options = ClusterOptions(args.partition, args.time, args.gpus_per_job, args.cpus_per_job,
                                 args.mem_gb, args.wait)
        cluster = "slurm" if args.launcher == "slurm" else "local"
        code = run_submitit(sweep.folder, args.workers, cluster, options)
        if args.launcher == "slurm" and not args.wait:
            return code
    for line in status_lines(sweep):
        log.info("%s", line)
    if code in (0, 1) and not args.no_table:
        _table_of(sweep.folder, None, "best", None)
    return code


def _table_of(folder: Path, metrics, at: str, by, out: Path | None = None,
              every_state: bool = False) -> int:
    from .main import _output_problem
    from ..sweep.table import TableError, write_table

    if out is not None:
        problem = _output_problem(out / "sweep_table.csv")
        if problem:
            log.error("-o: %s", problem)
            return 2
    try:
        text, paths = write_table(folder, metrics, at, by, out, every_state)
    except TableError as exc:
        log.error("%s", exc)
        return 2
    print(text, end="")
    if paths:
        log.info("wrote %s", ", ".join(map(str, paths)))
    return 0


def _table(args: argparse.Namespace) -> int:
    metrics = [m for m in (args.metric or "").split(",") if m] or None
    by = [k for k in (args.by or "").split(",") if k] or None
    return _table_of(Path(args.folder), metrics, args.at, by,
                     Path(args.output) if args.output else None, args.all)


def sweep_main(argv: list[str]) -> int:
    """`rumpy sweep ...`, parsed on its own so that key=value overrides may stand anywhere among
    the flags (argparse cannot intermix them under subcommands)."""
    from ..logs import setup_console

    parser = Parser(prog="rumpy sweep", description="run or resume every cell (grid x seeds) of "
                                                    "a sweep")
    _sweep_arguments(parser)
    args = parser.parse_intermixed_args(argv)
    setup_console()
    return _sweep(args)


def add_parsers(sub) -> None:
    sweep = sub.add_parser("sweep", help="run or resume every cell (grid x seeds) of a sweep TOML")
    _sweep_arguments(sweep)
    table = sub.add_parser("table", help="mean ± std over seeds per setting (sweep_table.csv/md)")
    _table_arguments(table)


def _sweep_arguments(sweep) -> None:
    sweep.add_argument("file", help="a config with a [sweep] table")
    sweep.add_argument("overrides", nargs="*", metavar="section.key=value",
                       help="override keys of every cell")
    sweep.add_argument("--cfg-default", action="append", default=[], dest="cfg_default",
                       metavar="TOML", help="a config the sweep file is merged onto")
    sweep.add_argument("--workers", type=positive, default=1, metavar="N",
                       help="worker processes (local) or jobs (slurm) sharing the cells")
    sweep.add_argument("--launcher", choices=("local", "slurm", "submitit-local"),
                       default="local", help="local processes (default), Slurm jobs through "
                                             "submitit, or submitit's local executor")
    sweep.add_argument("--partition", default="", help="slurm: partition")
    sweep.add_argument("--time", type=positive, default=240, metavar="MIN", help="slurm: time limit")
    sweep.add_argument("--gpus-per-job", type=non_negative, default=0, metavar="N")
    sweep.add_argument("--cpus-per-job", type=positive, default=2, metavar="N")
    sweep.add_argument("--mem-gb", type=positive, default=16, metavar="GB")
    sweep.add_argument("--wait", action="store_true", help="slurm: wait for the jobs")
    sweep.add_argument("--status", action="store_true", help="show the cells' states and exit")
    sweep.add_argument("--no-table", action="store_true", help="skip the table at the end")
    sweep.add_argument("--promote", type=non_negative, metavar="TRIAL",
                       help="a search: continue this (pruned or complete) trial to --num_epochs, "
                            "as a new trial with its parameters")
    sweep.add_argument("--num_epochs", "--num-epochs", type=positive, metavar="N",
                       help="with --promote: the epochs the promoted trial trains to")
    sweep.set_defaults(func=_sweep)


def _table_arguments(table) -> None:
    table.add_argument("folder", help="a sweep folder, or any folder of run folders (with --by)")
    table.add_argument("--metric", help="summary column(s), comma-separated (default: the runs' "
                                        "best_load_metric)")
    table.add_argument("--at", choices=("best", "last"), default="best",
                       help="each run's best epoch (by its best_load_metric) or its last")
    table.add_argument("--by", metavar="KEYS", help="group by these config keys, comma-separated "
                                                    "(default for a sweep: its grid keys)")
    table.add_argument("-o", "--output", metavar="DIR", help="write sweep_table.csv/.md here "
                       "(default: a sweep's own table goes into its folder; others are printed)")
    table.add_argument("--all", action="store_true", help="include runs that are not finished "
                                                          "(running, crashed, interrupted)")
    table.set_defaults(func=_table)
