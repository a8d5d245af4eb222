"""Our training epoch vs a hand-written PyTorch loop on the same model, batches and optimizer.

Run: .venv/bin/python benchmarks/train_loop.py [--rounds 5]
Prints the median epoch time of each and the ratio ours/raw (target <= 1.03)."""
from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rumpy.catalog import load_config
from rumpy.training.setup import prepare
from rumpy.training.progress import Progress
from rumpy.training.trainer import train_epoch

CONFIG = """
experiment = "bench"
experiment_save_loc = "{tmp}/Results"
[training]
gpu = "{gpu}"
num_epochs = 10
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


def raw_epoch(model, optimizer, loss_fn, batches, device) -> float:
    total = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    model.train()
    for batch in batches:
        x = batch["lq"].to(device, non_blocking=True).float().div_(255)
        y = batch["gt"].to(device, non_blocking=True).float().div_(255)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        n += 1
    return total.item() / n


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
        handler, loader, device = run.handler, run.loaders.train, run.device
        model = copy.deepcopy(handler.model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.L1Loss()
        run.loaders.sampler.set_epoch(1)
        batches = list(loader)  # identical batches for both loops, decoding excluded
        steps = len(batches)

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        progress = Progress(10, 0, terminal=False)  # what the trainer does in a log-only setting
        ours, raw = [], []
        train_epoch(handler, batches, watch=True)  # warm-up both
        raw_epoch(model, optimizer, loss_fn, batches, device)
        for _ in range(args.rounds):
            sync()
            t = time.perf_counter()
            raw_epoch(model, optimizer, loss_fn, batches, device)
            sync()
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            progress.start_epoch(1, 0, steps)
            train_epoch(handler, batches, progress=progress, watch=True)
            handler.end_epoch()
            sync()
            ours.append(time.perf_counter() - t)
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"device {device}, tiny EDSR (32 features, 4 blocks), {steps} steps of 16 x 32px patches")
    print(f"raw PyTorch loop: {r:.3f} s/epoch (median of {args.rounds})")
    print(f"rumpy train_epoch: {o:.3f} s/epoch")
    print(f"ratio rumpy/raw: {o / r:.3f}")


if __name__ == "__main__":
    main()
