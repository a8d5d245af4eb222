"""Data parallelism: the same run (same global batch) as 1 process and as N torchrun processes
(gloo on CPU, nccl on GPUs), interleaved rounds.

Run: .venv/bin/python benchmarks/distributed.py [--procs 2] [--rounds 3] [--gpu off]
Prints, per setting, the median steady epoch time (epochs after the first) from the runs'
summary.csv, the training throughput, the speed-up N vs 1 and the scaling efficiency
(speed-up / N). On a CPU machine every process gets cores / N threads, so the comparison is the
same cores used two ways."""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = """
experiment = "{name}"
experiment_save_loc = "{tmp}/Results"
[training]
gpu = "{gpu}"
num_epochs = {epochs}
logging = "text"
save_samples = false
aim_track = false
eval_frequency = 1000
keep_every_n_epochs = 0
[model]
name = "edsr"
[model.internal_params]
scale = 2
lr = 1e-4
num_features = 32
num_blocks = 4
[data]
batch_size = 16
dataloader_threads = 0
cache = "memory"
[data.training_sets.quickstart]
crop = 32
repeat = {repeat}
"""


def run(tmp: Path, name: str, procs: int, args) -> list[float]:
    path = tmp / f"{name}.toml"
    path.write_text(CONFIG.format(name=name, tmp=tmp, gpu=args.gpu, epochs=args.epochs,
                                  repeat=args.repeat))
    threads = max(1, (os.cpu_count() or 1) // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if procs == 1:
        command = [sys.executable, "-m", "rumpy.cli.train", "--parameters", str(path)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={procs}", "-m", "rumpy.cli.train", "--parameters", str(path)]
    subprocess.run(command, env=env, check=True, capture_output=True)
    with open(tmp / "Results" / name / "result_outputs" / "summary.csv", newline="") as f:
        return [float(r["epoch-time"]) for r in csv.DictReader(f)][1:]  # steady epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--gpu", default="off")
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], args.procs: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for procs in (1, args.procs):  # interleaved: both see the same machine load
                times[procs] += run(Path(tmp), f"p{procs}_r{r}", procs, args)
        samples = None
        with open(Path(tmp) / "Results" / "p1_r0" / "train.log") as f:
            for line in f:
                if "quickstart:" in line and "image pairs" in line:
                    samples = int(line.split("quickstart: ")[1].split()[0]) * args.repeat
    one, many = statistics.median(times[1]), statistics.median(times[args.procs])
    print(f"load average: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    for procs, t in ((1, one), (args.procs, many)):
        rate = f", {samples / t:.1f} samples/s" if samples else ""
        print(f"{procs} process(es): median steady epoch {t:.3f} s{rate}")
    print(f"speed-up {one / many:.2f}x, scaling efficiency {one / many / args.procs:.2f}")


if __name__ == "__main__":
    main()
