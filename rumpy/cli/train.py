"""train_sisr: train a super-resolution model from one TOML file."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

from ..config import ConfigError, load_config
from ..logs import attach_file, setup_console
from ..results.run_folder import RunExistsError

log = logging.getLogger("rumpy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train_sisr", description="Train a super-resolution model from a TOML config. "
        "Flags override the TOML only when given.")
    parser.add_argument("--parameters", required=True, metavar="TOML", help="the run's config file")
    parser.add_argument("--gpu", choices=("off", "single", "multiple"))
    parser.add_argument("--sp_gpu", type=int, metavar="N", help="CUDA device for --gpu single")
    parser.add_argument("--num_epochs", type=int, metavar="N")
    parser.add_argument("--experiment_name", metavar="NAME", help="run folder name")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--save_loc", metavar="DIR", help="folder holding run folders")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_console()
    # Imported after argument parsing so that --help answers instantly.
    from ..training.setup import prepare
    from ..training.trainer import train

    overrides = {k: getattr(args, k) for k in
                 ("gpu", "sp_gpu", "num_epochs", "experiment_name", "seed", "save_loc")}
    try:
        cfg = load_config(args.parameters, overrides)
        run = prepare(cfg)
        run.folder.create(cfg)
    except (ConfigError, RunExistsError) as exc:
        log.error("%s", exc)
        return 2
    handler = attach_file(run.folder.log)
    try:
        log.info("command: %s", shlex.join(sys.argv))
        train(run)
    except KeyboardInterrupt:
        log.error("interrupted; completed epochs are saved in %s", run.folder.models)
        return 130
    finally:
        handler.close()
        logging.getLogger("rumpy").removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
