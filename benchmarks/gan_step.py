"""rumpy's two-network (GAN) training step vs a hand-written one on the same models, batches,
losses and optimizers: an RRDBNet generator, Real-ESRGAN's U-Net discriminator, L1 + ragan,
EMA weights (decay 0.999), as ESRGAN's stage trains.

Run: .venv/bin/python benchmarks/gan_step.py [--rounds 5] [--gpu single]
Prints the median epoch time of each and the ratio rumpy/hand-written (goal <= 1.10)."""
from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from rumpy.catalog import load_config
from rumpy.training.progress import Progress
from rumpy.training.setup import prepare
from rumpy.training.trainer import train_epoch

CONFIG = """
experiment = "bench"
experiment_save_loc = "{tmp}/Results"
[training]
gpu = "{gpu}"
num_epochs = 10
ema_decay = 0.999
[model]
name = "rrdbnet"
[model.internal_params]
scale = 4
lr = 1e-4
optimizer_params = {{betas = [0.9, 0.99]}}
loss = {{l1 = 0.01}}
num_feat = 32
num_block = 2
num_grow_ch = 16
[model.discriminator]
name = "unet_discriminator"
num_feat = 32
gan_type = "ragan"
gan_weight = 0.005
lr = 1e-4
optimizer_params = {{betas = [0.9, 0.99]}}
[data]
batch_size = 8
dataloader_threads = 0
cache = "memory"
[data.training_sets.quickstart]
crop = 16
repeat = {repeat}
"""


def bce(pred, real: bool):
    return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, float(real)))


def raw_epoch(g, d, ema, opt_g, opt_d, batches, device) -> float:
    """BasicSR's ESRGANModel.optimize_parameters, written out."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    ema_p, g_p = list(ema.parameters()), [p.data for p in g.parameters()]
    g.train()
    d.train()
    for batch in batches:
        lq = batch["lq"].to(device, non_blocking=True).float().div_(255)
        gt = batch["gt"].to(device, non_blocking=True).float().div_(255)
        fake = g(lq)
        for p in d.parameters():
            p.requires_grad_(False)
        real_pred = d(gt).detach()
        fake_pred = d(fake)
        adv = 0.5 * (bce(real_pred - fake_pred.mean(), False) + bce(fake_pred - real_pred.mean(), True))
        loss_g = 0.01 * F.l1_loss(fake, gt) + 0.005 * adv
        for p in d.parameters():
            p.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_p, g_p, 1 - 0.999)
        real_pred, fake_pred = d(gt), d(fake.detach())
        loss_d = 0.5 * (bce(real_pred - fake_pred.mean(), True) + bce(fake_pred - real_pred.mean(), False))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        total += loss_g.detach()
    return total.item() / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=4, help="patches per image per epoch")
    parser.add_argument("--gpu", default="off")
    args = parser.parse_args()
    logging.getLogger("rumpy").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(CONFIG.format(tmp=tmp, gpu=args.gpu, repeat=args.repeat))
        run = prepare(load_config(path))
        handler, loader, device = run.handler, run.loaders.train, run.device
        g, d = copy.deepcopy(handler.model), copy.deepcopy(handler.groups["discriminator"].model)
        ema = copy.deepcopy(g)
        opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.9, 0.99))
        opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.9, 0.99))
        run.loaders.sampler.set_epoch(1)
        batches = list(loader)  # identical batches for both, decoding excluded
        steps = len(batches)

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        progress = Progress(10, 0, terminal=False)
        ours, raw = [], []
        train_epoch(handler, batches, watch=True)  # warm-up both
        raw_epoch(g, d, ema, opt_g, opt_d, batches, device)
        for _ in range(args.rounds):
            sync()
            t = time.perf_counter()
            raw_epoch(g, d, ema, opt_g, opt_d, batches, device)
            sync()
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            progress.start_epoch(1, 0, steps)
            train_epoch(handler, batches, progress=progress, watch=True)
            handler.end_epoch()
            handler.term_stats()
            sync()
            ours.append(time.perf_counter() - t)
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"device {device}, RRDBNet (32 features, 2 blocks) x4 + U-Net discriminator (32), "
          f"ragan + L1 + EMA, {steps} steps of 8 x 16px LR patches")
    print(f"hand-written GAN step: {r:.3f} s/epoch (median of {args.rounds})")
    print(f"rumpy two-network step: {o:.3f} s/epoch")
    print(f"ratio rumpy/hand-written: {o / r:.3f}")


if __name__ == "__main__":
    main()
