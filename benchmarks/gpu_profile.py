"""Where rumpy's half-precision training step loses time against the hand-written loop.

benchmarks/gpu.py found rumpy's bf16/fp16 EDSR-baseline steps 6-18% slower than a raw loop while
fp32 was even. This script takes the step apart on one GPU: the same batches and model through
variants that add one of rumpy's differences at a time, interleaved over rounds (the fastest of
each kept), each with its host time (the loop's Python and launches, no sync) beside its wall time:
a host time close to the wall time means the step is bound by the CPU, not the GPU. Then a
cProfile of rumpy's loop and of the raw loop (Python hot spots) and a torch.profiler table.

    python3 benchmarks/gpu_profile.py --out $OUT            # on the GPU (about 3 minutes)
    .venv/bin/python benchmarks/gpu_profile.py --cpu-smoke  # the same code, tiny, on the CPU

Variants (all: Adam, same weights at the start of each round, same batches):
  raw           the hand-written loop of benchmarks/gpu.py (copy on the compute stream)
  raw+prefetch  the raw step fed by rumpy's Prefetcher (side-stream copy, record_stream)
  raw+task      the raw loop computing the loss with the task's training_loss
  handler       rumpy's NetworkHandler.train_step per batch, batches placed on the compute stream
  rumpy         trainer.train_epoch (prefetcher + handler), what training runs"""
from __future__ import annotations

import argparse
import cProfile
import copy
import io
import logging
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import gpu  # noqa: E402  (benchmarks/gpu.py: the data, the config, ModelBench)
from rumpy.training import trainer  # noqa: E402
from rumpy.training.precision import AUTOCAST_DTYPES  # noqa: E402
from rumpy.training.prefetch import Prefetcher, place  # noqa: E402

log = logging.getLogger("gpu-profile")


def raw_step(compute_loss, optimizer, scaler, device, dtype):
    """The hand-written step around `compute_loss()` (the raw L1 or the task's loss)."""
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = compute_loss()
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


class Variants:
    def __init__(self, bench: gpu.ModelBench, precision: str):
        self.bench, self.precision = bench, precision
        self.device = bench.device
        self.dtype = AUTOCAST_DTYPES[precision]
        self.cfg = bench.config("prof", precision, False, None, epochs=1, repeat=1)

    def fresh_raw(self):
        model = copy.deepcopy(self.bench.base).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        return model, optimizer, scaler

    def run(self, name: str, batches: list) -> float:
        """Runs variant `name` over `batches`; returns the host seconds (before the final sync)."""
        device, dtype, task = self.device, self.dtype, self.bench.run.task
        if name == "rumpy":
            handler = self.bench.handler(self.cfg)
            t = time.perf_counter()
            out = trainer.train_epoch(handler, batches)
            host = time.perf_counter() - t
            float(out[1])
            return host
        if name == "handler":
            handler = self.bench.handler(self.cfg)
            total = torch.zeros((), dtype=torch.float64, device=device)
            t = time.perf_counter()
            for batch in batches:
                total += handler.train_step(place(batch, device))
            host = time.perf_counter() - t
            float(total)
            return host
        model, optimizer, scaler = self.fresh_raw()
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=device)
        feed = Prefetcher(batches, device) if name == "raw+prefetch" else batches
        t = time.perf_counter()
        for batch in feed:
            if name == "raw+task":
                placed = place(batch, device)
                compute = lambda: task.training_loss(model, placed)  # noqa: E731
            else:
                x = batch["lq"].to(device, non_blocking=True).float().div_(255)
                y = batch["gt"].to(device, non_blocking=True).float().div_(255)
                compute = lambda: F.l1_loss(model(x), y)  # noqa: E731
            total += raw_step(compute, optimizer, scaler, device, dtype)
        host = time.perf_counter() - t
        float(total)
        return host


VARIANTS = ("raw", "raw+prefetch", "raw+task", "handler", "rumpy")


def compare(v: Variants, batches: list, rounds: int) -> list[dict]:
    for name in VARIANTS:  # warm-up: cuDNN autotuning, allocator, lazy inits
        v.run(name, batches[:5])
    best = {name: (float("inf"), 0.0) for name in VARIANTS}
    for _ in range(rounds):
        for name in VARIANTS:
            result = {}
            wall = gpu.timed(lambda: result.setdefault("host", v.run(name, batches)), v.device)
            if wall < best[name][0]:
                best[name] = (wall, result["host"])
    raw = best["raw"][0]
    n = len(batches)
    return [{"variant": name, "ms/step": f"{1000 * wall / n:.2f}",
             "host ms/step": f"{1000 * host / n:.2f}", "raw/variant": f"{raw / wall:.3f}"}
            for name, (wall, host) in best.items()]


def python_profile(v: Variants, name: str, batches: list, out: Path) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    gpu.timed(lambda: v.run(name, batches), v.device)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    path = out / f"cprofile_{v.precision}_{name.replace('+', '_')}.txt"
    path.write_text(text.getvalue())
    return text.getvalue()


def torch_profile(v: Variants, name: str, batches: list, out: Path) -> str:
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if v.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        gpu.timed(lambda: v.run(name, batches), v.device)
    key = "self_cuda_time_total" if v.device.type == "cuda" else "self_cpu_time_total"
    text = (prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25) + "\n\n"
            + prof.key_averages().table(sort_by=key, row_limit=25))
    (out / f"torchprof_{v.precision}_{name.replace('+', '_')}.txt").write_text(text)
    return text


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--cpu-smoke", action="store_true")
    parser.add_argument("--cpu-dispatch", action="store_true",
                        help="on the CPU, EDSR-baseline's 16 blocks at 4 channels and 4x4 crops: "
                             "a step bound by launches and Python, as a small step on a GPU is")
    parser.add_argument("--precisions", default="bf16,fp16,fp32")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    label = "EDSR-baseline"
    if args.cpu_dispatch:
        args.gpu, args.batch, args.crop, args.workers, tile = "off", 1, 4, 0, 48
        gpu.MODELS[label] = (*gpu.MODELS[label][:2], "num_features = 4\nnum_blocks = 16")
        args.cpu_smoke = True
        torch.set_num_threads(1)
    elif args.cpu_smoke:
        args.gpu, args.batch, args.crop, args.workers, tile = "off", 4, 12, 0, 48
        args.steps, args.rounds = 3, 1
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: use --cpu-smoke here", file=sys.stderr)
            return 2
        args.gpu, args.batch, args.crop, args.workers, tile = "single", 16, 48, 0, 192
        torch.backends.cudnn.benchmark = True
    args.max_steps, args.warmup = args.steps, 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = [f"# {torch.cuda.get_device_name(0) if not args.cpu_smoke else 'CPU smoke'}, "
              f"torch {torch.__version__}; EDSR-baseline x2, batch {args.batch}, "
              f"{args.crop}x{args.crop} LR crops, {args.steps} steps, best of {args.rounds}"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gpu.make_data(root, tile, train=gpu.TRAIN_IMAGES, val=8)
        bench = gpu.ModelBench(args, label, root)
        batches = bench.batches[:args.steps]
        for precision in args.precisions.split(","):
            log.info("%s: variants", precision)
            v = Variants(bench, precision)
            report += ["", f"## {precision}", "", table(compare(v, batches, args.rounds))]
            (out / "profile.md").write_text("\n".join(report) + "\n")
            print("\n".join(report[-4:]), flush=True)
            if precision == "fp32":
                continue
            log.info("%s: profiles", precision)
            for name in ("raw", "rumpy"):
                text = python_profile(v, name, batches[:50], out)
                report += ["", f"### cProfile {name} ({precision}, 50 steps), top by tottime",
                           "", "```", "\n".join(text.splitlines()[:45]), "```"]
            text = torch_profile(v, "rumpy", batches[:20], out)
            report += ["", f"### torch.profiler rumpy ({precision}, 20 steps)", "", "```",
                       text[:6000], "```"]
            (out / "profile.md").write_text("\n".join(report) + "\n")
    print("\n".join(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
