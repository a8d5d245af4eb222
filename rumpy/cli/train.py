"""train_sisr / rumpy train: train a model from one TOML file (any task; train_sisr is the
super-resolution tool's original name)."""
from __future__ import annotations

import argparse
import errno
import os
import logging
import logging.handlers
import shlex
import sys

from ..config import ConfigError
from .args import Parser, epoch, integer
from ..logs import attach_file, detach_file, setup_console
from ..core.run_folder import RunExistsError
from ..tree.lock import NodeLockedError

log = logging.getLogger("rumpy")


def parse_args(argv: list[str] | None, prog: str = "train_sisr") -> argparse.Namespace:
    parser = Parser(
        prog=prog, description="Train a model (super-resolution, regression, ...) from a TOML "
        "config. Flags override the TOML only when given.")
    parser.add_argument("--parameters", required=True, metavar="TOML", help="the run's config file")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="override any key, e.g. training.seed=195 "
                             "model.internal_params.lr=2e-4 (values in TOML syntax)")
    parser.add_argument("--cfg-default", action="append", default=[], metavar="TOML",
                        dest="cfg_default", help="a config the --parameters file is merged onto "
                                                 "(repeatable; later wins)")
    parser.add_argument("--gpu", choices=("off", "single", "multiple"))
    parser.add_argument("--sp_gpu", type=integer, metavar="N", help="CUDA device for --gpu single")
    parser.add_argument("--num_epochs", type=integer, metavar="N")
    parser.add_argument("--num_iterations", type=integer, metavar="N",
                        help="a step-based run's length in optimizer steps")
    parser.add_argument("--experiment_name", metavar="NAME", help="run folder name")
    parser.add_argument("--seed", type=integer)
    parser.add_argument("--save_loc", metavar="DIR", help="folder holding run folders")
    dev = parser.add_argument_group("development modes")
    dev.add_argument("--dev", action="store_true", help="5 epochs of 10 training and 10 "
                     "validation batches, anomaly detection, gradient norms; the run folder goes "
                     "to a temporary folder unless --save_loc is given")
    dev.add_argument("--overfit", action="store_true", help="train and validate on one fixed "
                     "batch: the loss should fall by orders of magnitude; the run folder goes "
                     "to a temporary folder unless --save_loc is given")
    tree = parser.add_argument_group("result tree (each also a [training] key)")
    tree.add_argument("--continue_from_epoch", type=epoch, metavar="N|last|best",
                      help="continue (or fork) from this epoch of the node at --branch_root")
    tree.add_argument("--continue_from_step", type=integer, metavar="N",
                      help="a step-based run: continue (or fork) from the checkpoint of step N")
    tree.add_argument("--branch_root", metavar="PATH", help="node to start from, e.g. lr_half/warm")
    tree.add_argument("--new_branch", action="store_true", default=None,
                      help="fork a new branch at --continue_from_epoch")
    tree.add_argument("--new_branch_name", metavar="NAME")
    tree.add_argument("--overwrite_data", action="store_true", default=None,
                      help="allow removing later epochs of a node, or a whole existing run")
    tree.add_argument("--skip_optimizer_load", action="store_true", default=None)
    tree.add_argument("--skip_scheduler_load", action="store_true", default=None)
    tree.add_argument("--early_stopping_patience", type=integer, metavar="N")
    return parser.parse_intermixed_args(argv)  # key=value overrides anywhere among the flags


def _presets(args: argparse.Namespace) -> dict:
    """The keys --dev and --overfit set (beneath explicit flags and overrides). Both are checks,
    not results: their run folder goes to a new temporary folder (unless --save_loc), so they
    never collide with, or pose as, the config's real run."""
    out = {}
    if args.dev:
        out.update({k: ("--dev", v) for k, v in (
            ("training.num_epochs", 5), ("training.limit_train_batches", 10),
            ("training.limit_eval_batches", 10), ("training.detect_anomaly", True),
            ("training.log_grad", True))})
    if args.overfit:
        out["training.overfit"] = ("--overfit", True)
    mode = "--dev" if args.dev else "--overfit" if args.overfit else None
    if mode and args.save_loc is None:
        import tempfile
        where = tempfile.mkdtemp(prefix=f"rumpy-{mode[2:]}-")
        out["experiment_save_loc"] = (mode, where)
        log.info("%s: the run folder goes to %s (give --save_loc to keep it elsewhere)", mode,
                 where)
    return out


DISK_FULL = 4


def script() -> None:
    """The console scripts' entry: after a full disk, exit without running exit handlers, since
    Aim's cleanup waits forever on a writer that cannot write (our own files are all atomic and
    already closed, and the logs are flushed first)."""
    code = main()
    if code == DISK_FULL:
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None, prog: str = "train_sisr") -> int:
    args = parse_args(argv, prog)
    setup_console()
    try:
        return _main(args)
    except KeyboardInterrupt:  # Ctrl+C between imports, or before training started
        log.error("interrupted before training started; no run or branch folder was left "
                  "half-made")
        return 130


def _main(args: argparse.Namespace) -> int:
    # Imported after argument parsing so that --help answers instantly, and inside main()'s
    # Ctrl+C handling (torch's import is the longest moment of start-up).
    from ..catalog import load_config
    from ..config.load import CLI_OVERRIDES, attribute
    from ..core import distributed
    from ..core.distributed import SINGLE
    from ..training.callbacks import default_callbacks, early_output_worker
    from ..training.setup import prepare, start
    from ..training.trainer import train
    from ..tree.plan import TreeError

    overrides = {k: getattr(args, k) for k in CLI_OVERRIDES}
    # What is logged before the run folder exists (data checks, what a continue removes) is
    # held back and written to the node's train.log once it does.
    early = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
    log.addHandler(early)
    # the command line goes to train.log only; the console already shows it
    early.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "command: %s",
                                (shlex.join(sys.argv),), None))
    dist, cfg, outputs = SINGLE, None, None
    try:
        cfg = load_config(args.parameters, overrides, tuple(args.cfg_default),
                          tuple(args.overrides), presets=_presets(args))
        if cfg.training.gpu == "multiple" and not distributed.under_launcher():
            try:  # replaces this process with torch's launcher; returns only on error
                distributed.relaunch(sys.argv[1:])
            except ValueError as exc:
                raise ConfigError(args.parameters, "training.gpu", str(exc)) from None
        dist = distributed.init(cfg.training.gpu)
        if not dist.is_main:  # rank 0 speaks for all; the others only of their own errors
            logging.getLogger("rumpy").setLevel(logging.ERROR)
        elif not dist.enabled:  # its imports run beside the set-up, on the core it leaves idle
            # (not under data parallelism: forked beside gloo's fresh connections and threads,
            # and a few tenths of a second do not matter to a multi-process run)
            outputs = early_output_worker(cfg)
        run = prepare(cfg, dist)
        start(run)  # the first writes; a racing second process is refused here
    except BaseException as exc:
        if outputs is not None:
            outputs.abort()
        if not isinstance(exc, (ConfigError, RunExistsError, NodeLockedError, TreeError)):
            raise
        if isinstance(exc, ConfigError) and cfg is not None:
            exc = attribute(exc, cfg)
        if os.environ.get("RANK", "0") == "0":  # every rank finds it; rank 0 says it
            log.error("%s", exc)
        distributed.shutdown(dist)
        return 2
    finally:
        log.removeHandler(early)
    handler = attach_file(run.folder.log) if dist.is_main else None
    early.setTarget(handler)
    early.close()  # flushes into train.log
    try:
        state = train(run, default_callbacks(outputs) if dist.is_main else None)
        dist.barrier()  # no rank leaves the process group while another still uses it
    except KeyboardInterrupt:
        log.error("aborted; completed epochs are saved in %s", run.folder.models)
        return 130
    except OSError as exc:
        saved = max(run.node.own_saved(), default=None)
        ours = str(exc.filename or "").startswith(str(run.folder.root))
        if exc.errno == errno.EROFS or (ours and exc.errno in (errno.EACCES, errno.EPERM)):
            log.error("cannot write %s (%s): the run stopped; %s. Make it writable, then "
                      "continue with --continue_from_epoch last", exc.filename or run.folder.root,
                      exc.strerror, f"epochs up to {saved} are saved" if saved else
                      "no epoch was saved")
            return DISK_FULL
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        log.error("disk full (%s) in %s: the run stopped; %s. Free space, then continue with "
                  "--continue_from_epoch last", exc.strerror, run.folder.root,
                  f"epochs up to {saved} are saved" if saved else "no epoch was saved")
        return DISK_FULL
    finally:
        if handler is not None:
            detach_file(handler)
        distributed.shutdown(dist)
    return {"interrupted": 130, "diverged": 3}.get(state, 0)


if __name__ == "__main__":
    script()
