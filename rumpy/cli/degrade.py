"""`rumpy degrade`: HR images through a degradation pipeline (the original tool's
`image_manipulate`), from its pipeline TOML or the short `--pipeline a-b-c` form."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("rumpy")


def _degrade(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..data.degrade import fit_folder, read_pipeline, run

    if args.fit_kernel_pca:
        try:
            fit_folder(Path(args.fit_kernel_pca).expanduser().resolve())
        except ConfigError as exc:
            log.error("%s", exc)
            return 2
        return 0
    if not args.pipeline_config and not args.pipeline:
        log.error("rumpy degrade: expected --pipeline_config FILE or --pipeline a-b-c")
        return 2
    overrides = {"hr": args.hr, "out": args.out, "scale": args.scale, "seed": args.seed,
                 "multiples": args.multiples, "recursive": True if args.recursive else None,
                 "output_extension": args.output_extension}
    try:
        pipeline = read_pipeline(Path(args.pipeline_config) if args.pipeline_config else None,
                                 args.pipeline, overrides)
        run(pipeline)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return 0


def add_parsers(sub) -> None:
    deg = sub.add_parser("degrade", help="degrade HR images through a pipeline (blur, "
                                         "downsample, noise, JPEG) with per-image metadata")
    deg.add_argument("--hr", "--source_dir", dest="hr", help="folder of HR images")
    deg.add_argument("--out", "--output_dir", dest="out", help="folder to write LR images to")
    deg.add_argument("--pipeline_config", "--pipeline-config", dest="pipeline_config",
                     metavar="FILE", help="pipeline TOML in the original tool's layout")
    deg.add_argument("--pipeline", metavar="A-B-C",
                     help="operations with default options, e.g. blur-downsample-noise-compress")
    deg.add_argument("--scale", type=int, help="downsampling scale (default 4)")
    deg.add_argument("--seed", type=int, help="random seed (default 8)")
    deg.add_argument("--multiples", type=int, help="degraded copies per HR image (default 1)")
    deg.add_argument("--recursive", action="store_true", help="also read sub-folders")
    deg.add_argument("--output_extension", "--output-extension", dest="output_extension",
                     help="LR file format (default .png)")
    deg.add_argument("--fit-kernel-pca", "--fit_kernel_pca", dest="fit_kernel_pca",
                     metavar="LR_DIR", help="only (re)write LR_DIR/kernel_pca.npz, the blur "
                                            "kernel PCA of a folder rumpy degrade wrote, from its "
                                            "degradation_config.toml")
    deg.set_defaults(func=_degrade)
