"""The CUDA path, measured: rumpy's training epoch vs a hand-written loop on the same GPU, model,
batches and optimizer, in each precision and memory layout (and compiled), with the fixed costs
of an epoch (validation, checkpoint, outputs) and peak GPU memory. One markdown table.

Run by benchmarks/gpu_check.sh on a GPU machine:
    python3 benchmarks/gpu.py --out $OUT --budget 270
On this CPU-only machine, the same code tiny and fast (catches bugs before the one GPU run):
    .venv/bin/python benchmarks/gpu.py --cpu-smoke --out /tmp/gpu_smoke

Method. Each model's training batches (48x48 LR crops, x2, of scikit-image photo tiles) are
loaded once into pinned memory, so both loops see the same bytes and no decoding. Per
configuration: a warm-up (cuDNN autotuning, compilation) on both, then one timed epoch of the
same steps each (rumpy: `train_epoch` with its prefetcher; raw: `.to(non_blocking=True)`,
autocast, GradScaler for fp16, Adam). Fixed costs: a real 2-epoch `train()` run (checkpoints,
validation, summary, plots; trackers off) whose second epoch's wall time minus its training
steps is the per-epoch fixed cost, stated as a share of an epoch of 1000 steps at the measured
step time (extrapolated). Every configuration that fails prints FAIL in its row; the rest go on.
The table is rewritten after every row, so a time-out still leaves what was measured."""
from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rumpy.catalog import load_config  # noqa: E402
from rumpy.data.images import downscale_uint8, write_png  # noqa: E402
from rumpy.training import trainer  # noqa: E402
from rumpy.training.handler import NetworkHandler  # noqa: E402
from rumpy.training.precision import AUTOCAST_DTYPES, configure_backends  # noqa: E402
from rumpy.training.setup import prepare, start  # noqa: E402

log = logging.getLogger("gpu-bench")

MODELS = {  # name -> (rumpy model, architecture at full size, at smoke size)
    "EDSR-baseline": ("edsr", "num_features = 64\nnum_blocks = 16",
                      "num_features = 8\nnum_blocks = 1"),
    "RCAN": ("rcan", "num_groups = 10\nnum_blocks = 20\nnum_features = 64\nreduction = 16",
             "num_groups = 1\nnum_blocks = 1\nnum_features = 8\nreduction = 4"),
}
PRECISIONS = ("fp32", "bf16", "fp16")
TRAIN_IMAGES = 16

CONFIG = """
experiment = "{name}"
experiment_save_loc = "{root}/Results"

[training]
num_epochs = {epochs}
seed = 1
gpu = "{gpu}"
metrics = ["PSNR", "SSIM"]
trackers = []
num_samples = 2
logging = "visual"
precision = "{precision}"
channels_last = {channels_last}
compile = {compile}

[model]
name = "{model}"

[model.internal_params]
scale = 2
lr = 1e-4
{arch}

[data]
batch_size = {batch}
eval_batch_size = 4
dataloader_threads = {workers}
cache = "memory"
cache_dir = "{root}/cache"

[data.training_sets.tiles]
lr = "{root}/train/LR"
hr = "{root}/train/HR"
crop = {crop}
repeat = {repeat}

[data.eval_sets.tiles_val]
lr = "{root}/val/LR"
hr = "{root}/val/HR"
"""

COLUMNS = ["model", "precision", "layout", "compile", "rumpy img/s", "raw img/s", "rumpy/raw",
           "data-wait %", "peak GiB", "fixed s/epoch", "fixed % @1000 steps", "note"]


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Table:
    def __init__(self, out: Path, header: list[str]):
        self.out, self.header, self.rows = out, header, []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.write()

    def text(self) -> str:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for row in self.rows:
            lines.append("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
        return "\n".join(self.header + [""] + lines) + "\n"

    def write(self) -> None:
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(self.text())
        os.replace(tmp, self.out)


def make_data(root: Path, size: int, train: int, val: int) -> None:
    """HR tiles of scikit-image's bundled photos and their x2 LR (MATLAB bicubic)."""
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for split, count in (("train", train), ("val", val)):
        (root / split / "HR").mkdir(parents=True, exist_ok=True)
        (root / split / "LR").mkdir(parents=True, exist_ok=True)
        for n in range(count):
            img = photos[n % len(photos)]
            h, w = img.shape[:2]
            top, left = (n * 53) % (h - size), (n * 71) % (w - size)
            tile = np.ascontiguousarray(img[top: top + size, left: left + size, :3])
            write_png(root / split / "HR" / f"{n:04d}.png", tile)
            write_png(root / split / "LR" / f"{n:04d}.png", downscale_uint8(tile, 2))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_epoch(model, optimizer, scaler, batches, device, dtype, channels_last) -> float:
    """The hand-written loop: what one would write without rumpy."""
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for batch in batches:
        x = batch["lq"].to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = batch["gt"].to(device, non_blocking=True).contiguous(memory_format=fmt)
        x, y = x.float().div_(255), y.float().div_(255)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.l1_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total += loss.detach()
    return float(total)


def timed(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


class ModelBench:
    """One model: its run (task, loaders) prepared once, its batches in pinned memory."""

    def __init__(self, args, label: str, root: Path):
        self.args, self.label = args, label
        model, full, small = MODELS[label]
        self.root = root
        self.name = label.lower().replace("-", "_")
        self.values = dict(root=root, gpu=args.gpu, model=model, arch=small if args.cpu_smoke else full,
                           batch=args.batch, workers=args.workers, crop=args.crop)
        # one pass of the loader gives every batch the comparisons use
        repeat = -(-(args.max_steps + args.warmup) * args.batch // TRAIN_IMAGES)
        self.run = prepare(self.config(self.name, "fp32", False, None, epochs=1, repeat=repeat))
        self.device = self.run.device
        self.base = copy.deepcopy(self.run.handler.model).cpu()
        self.run.loaders.sampler.set_epoch(1)
        pin = self.device.type == "cuda"
        self.batches = []
        for batch in self.run.loaders.train:
            self.batches.append({k: v.pin_memory() if pin and isinstance(v, torch.Tensor) else v
                                 for k, v in batch.items()})
            if len(self.batches) >= args.max_steps + args.warmup:
                break

    def config(self, name: str, precision: str, channels_last: bool, mode: str | None,
               epochs: int, repeat: int):
        path = self.root / f"{name}.toml"
        path.write_text(CONFIG.format(name=name, epochs=epochs, precision=precision,
                                      channels_last=str(channels_last).lower(),
                                      compile=f'"{mode}"' if mode else "false", repeat=repeat,
                                      **self.values))
        return load_config(path)

    def handler(self, cfg) -> NetworkHandler:
        configure_backends(cfg, self.device)
        return NetworkHandler(cfg, copy.deepcopy(self.base), self.run.task, len(self.batches),
                              self.device)

    def compare(self, precision: str, channels_last: bool, mode: str | None = None) -> dict:
        """rumpy's epoch and the raw loop's on the same batches, interleaved (rumpy, raw, rumpy,
        raw: clocks and the host's load hit both alike), the faster of two rounds each;
        images/s and peak memory."""
        args, device = self.args, self.device
        cfg = self.config("cmp", precision, channels_last, mode, epochs=1, repeat=1)
        handler = self.handler(cfg)
        warm, rest = self.batches[:args.warmup], self.batches[args.warmup:]
        timed(lambda: trainer.train_epoch(handler, warm), device)  # autotuning, compilation
        # the pace after warm-up sets how many steps fit the per-configuration time
        per_step = timed(lambda: trainer.train_epoch(handler, rest[:5]), device) / 5
        steps = int(min(len(rest), max(args.min_steps, args.seconds / max(per_step, 1e-6))))
        batches = rest[:steps]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result = {}

        def ours():
            result["out"] = trainer.train_epoch(handler, batches)
            float(result["out"][1])

        model = copy.deepcopy(self.base).to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        dtype = AUTOCAST_DTYPES[precision]
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        step_model = torch.compile(model, mode=mode) if mode else model
        timed(lambda: raw_epoch(step_model, optimizer, scaler, warm, device, dtype,
                                channels_last), device)
        t_ours = t_raw = float("inf")
        waited = 0.0
        for _ in range(2):
            took = timed(ours, device)
            if took < t_ours:
                t_ours, waited = took, result["out"][3]
            t_raw = min(t_raw, timed(lambda: raw_epoch(step_model, optimizer, scaler, batches,
                                                       device, dtype, channels_last), device))
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        compiled = handler.compiled
        del handler
        images = steps * args.batch
        return {"rumpy img/s": f"{images / t_ours:.0f}", "raw img/s": f"{images / t_raw:.0f}",
                "rumpy/raw": f"{t_raw / t_ours:.3f}",
                "data-wait %": f"{100 * waited / t_ours:.1f}",
                "peak GiB": f"{peak:.2f}" if peak is not None else "-",
                "_step_s": t_ours / steps, "note": f"{steps} steps"
                + ("" if compiled or not mode else "; compile fell back to eager")}

    def fixed_costs(self, precision: str, channels_last: bool, step_s: float) -> dict:
        """A real 2-epoch run; epoch 2's wall time minus its training steps."""
        cfg = self.config(f"{self.name}_e2e", precision, channels_last, None, epochs=2,
                          repeat=self.args.e2e_repeat)
        steps_time = []
        original = trainer.train_epoch

        def train_epoch(*a, **k):
            t = time.perf_counter()
            out = original(*a, **k)
            float(out[1])  # the steps' work done
            steps_time.append(time.perf_counter() - t)
            return out
        trainer.train_epoch = train_epoch
        try:
            run = prepare(cfg)
            start(run)
            state = trainer.train(run)
        finally:
            trainer.train_epoch = original
        if state != "finished":
            raise RuntimeError(f"the run ended {state}")
        epoch = run.summary.rows[-1]
        fixed = max(0.0, epoch["epoch-time"] - steps_time[-1])
        per_1000 = fixed / (fixed + 1000 * step_s)
        return {"fixed s/epoch": f"{fixed:.2f}", "fixed % @1000 steps": f"{100 * per_1000:.1f}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for everything")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny models and steps on the CPU: checks the script, measures nothing")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("rumpy").setLevel(logging.WARNING)
    if args.cpu_smoke:
        args.gpu, args.batch, args.crop, args.e2e_repeat, args.workers = "off", 4, 12, 1, 0
        args.warmup, args.min_steps, args.max_steps, args.seconds, tile = 2, 2, 3, 0.1, 48
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: use --cpu-smoke here", file=sys.stderr)
            return 2
        args.gpu, args.batch, args.crop, args.e2e_repeat, args.workers = "single", 16, 48, 20, 8
        args.warmup, args.min_steps, args.max_steps, args.seconds, tile = 15, 10, 400, 1.5, 192
    budget = Budget(args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = ("CPU smoke (numbers mean nothing)" if args.cpu_smoke else
              torch.cuda.get_device_name(0))
    header = [f"# rumpy GPU check: {device}",
              "",
              f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python "
              f"{platform.python_version()}; batch {args.batch}, x2, {args.crop}x{args.crop} LR "
              f"crops, Adam, cudnn_benchmark on, tf32 off (fp32 is true float32); "
              f"rumpy/raw > 1 means rumpy is faster. Fixed costs: validation of 8 images "
              f"({tile}x{tile} HR), checkpoint, summary, plots, sample images per epoch, measured "
              f"on a 2-epoch run (epoch 2 minus its steps) and extrapolated to 1000 steps at the "
              f"measured step time."]
    table = Table(out / "gpu_table.md", header)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, tile, train=TRAIN_IMAGES, val=8)
        labels = [m for m in args.models.split(",") if m]
        for index, label in enumerate(labels):
            share = budget.left() / (len(labels) - index) - (60 if not args.no_compile and
                                                               index == 0 else 0)
            model_end = time.monotonic() + share
            log.info("%s: preparing (%.0f s of budget for it)", label, share)
            try:
                bench = ModelBench(args, label, root)
            except Exception as exc:
                traceback.print_exc()
                table.add({"model": label, "note": f"FAIL: {type(exc).__name__}: {exc}"[:200]})
                continue
            step_s = {}
            for precision in PRECISIONS:
                for channels_last in (False, True):
                    row = {"model": label, "precision": precision,
                           "layout": "NHWC" if channels_last else "NCHW", "compile": "-"}
                    if time.monotonic() > model_end:
                        table.add({**row, "note": "SKIP (budget)"})
                        continue
                    log.info("%s %s %s", label, precision, row["layout"])
                    try:
                        result = bench.compare(precision, channels_last)
                        step_s[(precision, channels_last)] = result.pop("_step_s")
                        row.update(result)
                        if (precision, channels_last) == ("bf16", True):
                            if time.monotonic() < model_end - 10:
                                log.info("%s: fixed costs of an epoch", label)
                                row.update(bench.fixed_costs(precision, channels_last,
                                                             step_s[(precision, channels_last)]))
                    except Exception as exc:
                        traceback.print_exc()
                        row["note"] = f"FAIL: {type(exc).__name__}: {exc}"[:200]
                    table.add(row)
                    print(table.text().splitlines()[-1], flush=True)
            if index == 0 and not args.no_compile:
                row = {"model": label, "precision": "bf16", "layout": "NHWC",
                       "compile": "default"}
                if budget.left() < (0 if args.cpu_smoke else 90):
                    table.add({**row, "note": "SKIP (budget)"})
                else:
                    log.info("%s bf16 NHWC compiled", label)
                    try:
                        row.update(bench.compare("bf16", True, "default"))
                        row.pop("_step_s", None)
                    except Exception as exc:
                        traceback.print_exc()
                        row["note"] = f"FAIL: {type(exc).__name__}: {exc}"[:200]
                    table.add(row)
            del bench
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    log.info("table written to %s", table.out)  # gpu_check.sh prints it
    return 0


if __name__ == "__main__":
    sys.exit(main())
