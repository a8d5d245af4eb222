"""What validating every N steps costs: whole step-based runs (rumpy's trainer, checkpoints,
summary rows, sample images) of the same T steps, validated once at the end vs every T/k steps,
against the time one validation takes (measured in the same process, on the same weights).
The extra time of the k-validation run over the 1-validation run, divided by the k - 1 extra
validations' own time, should be close to 1: a validation costs what the validation itself costs
(plus its checkpoint and row, written in the background).

Run: .venv/bin/python benchmarks/step_validation.py [--rounds 3] [--steps 240] [--k 8]"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from rumpy.catalog import load_config
from rumpy.cli.train import main as train_main
from rumpy.training.setup import prepare

CONFIG = """
experiment = "bench"
experiment_save_loc = "{tmp}/Results"
[training]
gpu = "{gpu}"
num_iterations = {steps}
eval_every_n_steps = {every}
logging = "text"
trackers = []
num_samples = 2
save_samples = {samples}
[model]
name = "edsr"
[model.internal_params]
scale = 2
lr = 1e-4
num_features = 32
num_blocks = 4
[data]
batch_size = 16
eval_batch_size = 1
dataloader_threads = 0
cache = "memory"
[data.training_sets.quickstart]
crop = 32
repeat = 40
[data.eval_sets.quickstart]
"""


def run_once(tmp: Path, name: str, steps: int, every: int, gpu: str, samples: str) -> float:
    path = tmp / f"{name}.toml"
    path.write_text(CONFIG.format(tmp=tmp, gpu=gpu, steps=steps, every=every, samples=samples))
    start = time.perf_counter()
    assert train_main(["--parameters", str(path), "--experiment_name", name,
                       "--overwrite_data"]) == 0
    return time.perf_counter() - start


def validation_time(tmp: Path, steps: int, gpu: str, rounds: int, samples: str) -> float:
    path = tmp / "val.toml"
    path.write_text(CONFIG.format(tmp=tmp, gpu=gpu, steps=steps, every=steps, samples=samples))
    run = prepare(load_config(path, overrides={"experiment_name": "val_only"}))
    outputs = samples == "true"
    run.task.evaluate(run.handler, with_outputs=outputs)  # warm-up
    times = []
    for _ in range(rounds * 3):
        start = time.perf_counter()
        run.task.evaluate(run.handler, with_outputs=outputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--k", type=int, default=8, help="validations of the frequent run")
    parser.add_argument("--gpu", default="off")
    parser.add_argument("--no-samples", action="store_true",
                        help="save_samples = false: no sample images written in the background")
    args = parser.parse_args()
    samples = "false" if args.no_samples else "true"
    logging.getLogger("rumpy").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        once, often = [], []
        every = args.steps // args.k
        run_once(tmp, "warm", every, every, args.gpu, samples)
        for _ in range(args.rounds):  # interleaved: drift hits both alike
            once.append(run_once(tmp, "once", args.steps, args.steps, args.gpu, samples))
            often.append(run_once(tmp, "often", args.steps, every, args.gpu, samples))
        one = validation_time(tmp, args.steps, args.gpu, args.rounds, samples)
    a, b = statistics.median(once), statistics.median(often)
    extra = b - a
    print(f"{args.steps} steps; validated once: {a:.2f} s, every {args.steps // args.k} steps "
          f"({args.k} validations): {b:.2f} s (medians of {args.rounds})")
    print(f"one validation{' (with its sample images)' if samples == 'true' else ''}: "
          f"{one:.3f} s; the {args.k - 1} extra "
          f"validations: {(args.k - 1) * one:.2f} s")
    print(f"extra time / extra validations' own time: {extra / ((args.k - 1) * one):.2f} "
          f"(1 = a validation costs only itself)")


if __name__ == "__main__":
    main()
