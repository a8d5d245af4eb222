"""The cost of per-step logging: rumpy's training epoch with training.log_every_n_steps = 1
(a steps.csv row after every optimizer step: one device sync and one line written each) vs the
same epoch without it, interleaved on the same model and batches.

Run: .venv/bin/python benchmarks/step_log.py [--rounds 7] [--gpu single]
Prints the median epoch time of each and the ratio logged/unlogged (target < 1.03)."""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_loop import CONFIG  # noqa: E402  (the same benchmark model and data)

from rumpy.catalog import load_config  # noqa: E402
from rumpy.training.setup import prepare  # noqa: E402
from rumpy.training.step_log import StepLog  # noqa: E402
from rumpy.training.trainer import train_epoch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=60, help="patches per image per epoch")
    parser.add_argument("--gpu", default="off")
    args = parser.parse_args()
    logging.getLogger("rumpy").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(CONFIG.format(tmp=tmp, gpu=args.gpu, repeat=args.repeat))
        run = prepare(load_config(path))
        handler, device = run.handler, run.device
        run.loaders.sampler.set_epoch(1)
        batches = list(run.loaders.train)  # identical batches for both, decoding excluded
        log = StepLog(Path(tmp) / "steps.csv", 1, handler.train_terms, log_grad=False)
        log.start(None, 0, branch=False)

        def epoch(step_log) -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            train_epoch(handler, batches, step_log=step_log, epoch=1)
            handler.end_epoch()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t

        epoch(None)  # warm-up
        plain, logged = [], []
        for _ in range(args.rounds):
            plain.append(epoch(None))
            logged.append(epoch(log))
        log.close()
        rows = sum(1 for _ in open(Path(tmp) / "steps.csv")) - 1
    p, q = statistics.median(plain), statistics.median(logged)
    print(f"device {device}, {len(batches)} steps an epoch, {rows} steps.csv rows written")
    print(f"without step log: {p:.3f} s/epoch (median of {args.rounds})")
    print(f"log_every_n_steps = 1: {q:.3f} s/epoch")
    print(f"ratio logged/unlogged: {q / p:.3f}")


if __name__ == "__main__":
    main()
