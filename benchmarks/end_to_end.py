"""The real `train_sisr` with its default outputs vs a hand-written PyTorch script doing the same
work on the same data, and vs PyTorch Lightning when it is installed (`pip install -e .[bench]`).

Each variant runs as its own process, in interleaved rounds (the order rotates every round). All
of them train a tiny EDSR x2 on the quickstart photos (batch 16, 32 px LR crops with flips, Adam,
L1), validate on the two full quickstart validation images every epoch (PSNR on Y; rumpy also
its per-image loss and the bicubic baseline once) and save a checkpoint every epoch.

  raw          hand-written: DataLoader, Adam, L1, PSNR on Y, torch.save per epoch
  lightning    LightningModule + Trainer (ModelCheckpoint every epoch, CSVLogger)
  rumpy        `train_sisr` with the defaults: PNG plots, 3 sample strips, Aim (sample images too)
  rumpy-text   `train_sisr` with outputs off (logging = "text", no samples, no Aim)

Run: .venv/bin/python benchmarks/end_to_end.py [--rounds 4] [--epochs 6]
Prints per variant the median steady epoch (interval between epoch ends, first epoch left out),
the launch-to-first-optimizer-step time, the launch-to-exit time, the CPU time of the whole
process tree (user + system, output worker and loader workers included), the ratios to the raw script,
what the default outputs add to a whole process (rumpy - rumpy-text, paired by round), a
per-part breakdown of rumpy's epoch, and the machine's load average around each round. One
untimed rumpy run comes first: Aim makes its repository once per results folder (~1 s)."""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALE, CROP, BATCH, REPEAT, LR = 2, 32, 16, 40, 1e-3
MODEL = {"num_features": 32, "num_blocks": 4, "res_scale": 1.0}

CONFIG = """
experiment = "{name}"
experiment_save_loc = "{out}"
[training]
num_epochs = {epochs}
seed = 8
gpu = "off"
metrics = ["PSNR"]
{outputs}
[model]
name = "edsr"
[model.internal_params]
scale = {scale}
lr = {lr}
optimizer = "adam"
loss = "l1"
num_features = {num_features}
num_blocks = {num_blocks}
res_scale = {res_scale}
[data]
batch_size = {batch}
eval_batch_size = 1
dataloader_threads = 1
cache = "memory"
cache_dir = "{cache}"
[data.training_sets.quickstart]
crop = {crop}
random_augment = true
repeat = {repeat}
[data.eval_sets.quickstart]
"""
TEXT_OUTPUTS = 'logging = "text"\nsave_samples = false\naim_track = false'

# rumpy's own entry point with timing marks (first optimizer step of the training loop, each
# epoch's end, the parts of an epoch, the end after the output worker's drain)
RUMPY = r"""
import json, os, sys, time
marks = {"epoch_ends": [], "parts": {}}
def part(name, seconds):
    marks["parts"].setdefault(name, []).append(seconds)
import rumpy.training.trainer as trainer
from rumpy.training.handler import NetworkHandler
from rumpy.tasks.sisr import SISRTask
step, loop = NetworkHandler.train_step, trainer.train_epoch
def train_step(self, batch, *a, **k):
    loss = step(self, batch, *a, **k)
    if marks.get("in_loop") and "first_step" not in marks:
        marks["first_step"] = time.time()
    return loss
def train_epoch(*a, **k):
    marks["in_loop"] = True
    t = time.perf_counter()
    out = loop(*a, **k)
    part("train steps", time.perf_counter() - t)
    return out
evaluate = SISRTask.evaluate
def timed_evaluate(self, *a, **k):
    t = time.perf_counter()
    out = evaluate(self, *a, **k)
    part("validation", time.perf_counter() - t)
    return out
NetworkHandler.train_step, trainer.train_epoch, SISRTask.evaluate = train_step, train_epoch, timed_evaluate
import rumpy.training.callbacks as callbacks
defaults = callbacks.default_callbacks
def timed(cb):
    inner = cb.on_epoch_end
    def on_epoch_end(*a):
        t = time.perf_counter()
        inner(*a)
        part(type(cb).__name__, time.perf_counter() - t)
    cb.on_epoch_end = on_epoch_end
    return cb
class EpochEnd(trainer.Callback):
    def on_epoch_end(self, *a):
        marks["epoch_ends"].append(time.time())
callbacks.default_callbacks = lambda *a: [timed(c) for c in defaults(*a)] + [EpochEnd()]
from rumpy.cli.train import main
code = main(sys.argv[1:])
marks["end"] = time.time()
with open(os.environ["BENCH_MARKS"], "w") as f:
    json.dump(marks, f)
sys.exit(code)
"""

RAW = r'''
import json, os, sys, time
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from rumpy.models.edsr import EDSR
from pathlib import Path

marks = {"epoch_ends": []}
cfg = json.loads(sys.argv[1])
torch.manual_seed(8)

def load(folder):
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(folder).glob("*.png"))]

train_lr, train_hr = load(cfg["train_lr"]), load(cfg["train_hr"])
val_lr, val_hr = load(cfg["val_lr"]), load(cfg["val_hr"])
S, C = cfg["scale"], cfg["crop"]

class Patches(Dataset):
    def __len__(self):
        return len(train_lr) * cfg["repeat"]
    def __getitem__(self, i):
        lr, hr = train_lr[i % len(train_lr)], train_hr[i % len(train_lr)]
        top, left = np.random.randint(0, lr.shape[0] - C + 1), np.random.randint(0, lr.shape[1] - C + 1)
        lr = lr[top:top + C, left:left + C]
        hr = hr[top * S:(top + C) * S, left * S:(left + C) * S]
        if np.random.rand() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if np.random.rand() < 0.5:
            lr, hr = lr[::-1], hr[::-1]
        if np.random.rand() < 0.5:
            lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
        return t(lr), t(hr)

def y(img):  # 0..255 float RGB -> BT.601 luma
    return (img[:, 0] * 65.481 + img[:, 1] * 128.553 + img[:, 2] * 24.966) / 255 + 16

loader = DataLoader(Patches(), batch_size=cfg["batch"], shuffle=True, num_workers=1)
model = EDSR(S, **cfg["model"])
opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
l1 = torch.nn.L1Loss()
out = Path(cfg["out"]); out.mkdir(parents=True, exist_ok=True)
for epoch in range(1, cfg["epochs"] + 1):
    model.train()
    for lr, hr in loader:
        loss = l1(model(lr.float() / 255), hr.float() / 255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        marks.setdefault("first_step", time.time())
    model.eval()
    psnrs = []
    with torch.no_grad():
        for lr, hr in zip(val_lr, val_hr):
            x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
            sr = (model(x).clamp(0, 1) * 255).round()
            h = torch.from_numpy(hr).permute(2, 0, 1)[None].float()
            d = (y(sr) - y(h))[:, S:-S, S:-S].double()
            psnrs.append(float(10 * torch.log10(255 ** 2 / d.pow(2).mean())))
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "psnr": sum(psnrs) / len(psnrs)}, out / f"epoch_{epoch}.pt")
    marks["epoch_ends"].append(time.time())
marks["end"] = time.time()
with open(os.environ["BENCH_MARKS"], "w") as f:
    json.dump(marks, f)
'''

LIGHTNING = r'''
import json, os, sys, time
import lightning_utilities.core.imports as lu
# this venv's torchvision does not load against its torch; torchmetrics must not try it
_available = lu.RequirementCache.__bool__
lu.RequirementCache.__bool__ = lambda self: (
    False if "torchvision" in str(getattr(self, "requirement", "")) else _available(self))
exec(open(os.environ["BENCH_RAW_DATA"]).read())  # the raw script's data, model and metric
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

l1 = torch.nn.L1Loss()

class SR(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = EDSR(S, **cfg["model"])
    def training_step(self, batch, i):
        lr, hr = batch
        return l1(self.model(lr.float() / 255), hr.float() / 255)
    def on_train_batch_end(self, outputs, batch, i):  # after the optimizer step
        marks.setdefault("first_step", time.time())
    def validation_step(self, batch, i):
        lr, hr = batch
        sr = (self.model(lr.float() / 255).clamp(0, 1) * 255).round()
        d = (y(sr) - y(hr.float()))[:, S:-S, S:-S].double()
        self.log("psnr", 10 * torch.log10(255 ** 2 / d.pow(2).mean()), batch_size=1)
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=cfg["lr"])

class Marks(L.Callback):
    def on_train_epoch_end(self, trainer, module):
        marks["epoch_ends"].append(time.time())

val = [(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))
       for a, b in zip(val_lr, val_hr)]
trainer = L.Trainer(max_epochs=cfg["epochs"], accelerator="cpu", devices=1, logger=CSVLogger(cfg["out"]),
                    callbacks=[ModelCheckpoint(dirpath=cfg["out"], every_n_epochs=1, save_top_k=-1), Marks()],
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
trainer.fit(SR(), loader, DataLoader(val, batch_size=1))
marks["end"] = time.time()
with open(os.environ["BENCH_MARKS"], "w") as f:
    json.dump(marks, f)
'''


def raw_data_part() -> str:
    """The raw script up to its training loop: what the Lightning script shares with it."""
    return RAW.split("model = EDSR")[0]


def lightning_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("lightning") is not None


def run_variant(name: str, tmp: Path, args, sets: dict) -> dict:
    out = tmp / f"{name}-{time.monotonic_ns()}"
    marks = out.with_suffix(".json")
    env = {**os.environ, "BENCH_MARKS": str(marks), "PYTHONPATH": f"{ROOT}{os.pathsep}"
           f"{os.environ.get('PYTHONPATH', '')}"}
    if name.startswith("rumpy"):
        cfg = tmp / f"{name}.toml"
        cfg.write_text(CONFIG.format(name=out.name, out=tmp / "Results", epochs=args.epochs,
                                     outputs="" if name == "rumpy" else TEXT_OUTPUTS,
                                     scale=SCALE, lr=LR, batch=BATCH, cache=tmp / "cache",
                                     crop=CROP, repeat=REPEAT, **MODEL))
        cmd = [sys.executable, "-c", RUMPY, "--parameters", str(cfg)]
    else:
        spec = json.dumps({**sets, "scale": SCALE, "crop": CROP, "batch": BATCH, "lr": LR,
                           "repeat": REPEAT, "epochs": args.epochs, "model": MODEL,
                           "out": str(out)})
        if name == "raw":
            cmd = [sys.executable, "-c", RAW, spec]
        else:
            data = tmp / "raw_data.py"
            data.write_text(raw_data_part())
            env["BENCH_RAW_DATA"] = str(data)
            cmd = [sys.executable, "-c", "import sys; sys.argv[1:] = [sys.argv[1]]\n" + LIGHTNING,
                   spec]
    launch = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    exited = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # user + system CPU of the process and every child it waited for (the output worker, the
    # data loader workers): what the run costs a shared machine, whatever the wall clock says
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if proc.returncode != 0:
        sys.exit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    m = json.loads(marks.read_text())
    ends = m["epoch_ends"]
    return {"epoch": statistics.median(b - a for a, b in zip(ends, ends[1:])),
            "start": m["first_step"] - launch, "total": exited - launch,
            "drain": m["end"] - ends[-1], "cpu": cpu, "parts": m.get("parts", {})}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--variants", default="raw,lightning,rumpy,rumpy-text")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",")
                if v != "lightning" or lightning_installed()]
    if "lightning" in args.variants and "lightning" not in variants:
        print("lightning is not installed (pip install -e .[bench]); left out")
    sys.path.insert(0, str(ROOT))
    from rumpy.data.builtin import quickstart

    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        (train_lr, train_hr), (val_lr, val_hr) = (quickstart(cache, SCALE, r)
                                                  for r in ("train", "eval"))
        sets = {"train_lr": str(train_lr), "train_hr": str(train_hr), "val_lr": str(val_lr),
                "val_hr": str(val_hr)}
        if "rumpy" in variants:  # untimed: Aim makes its repository once per results folder
            run_variant("rumpy", tmp, args, sets)
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            load = os.getloadavg()[0]
            for v in order:
                results[v].append(run_variant(v, tmp, args, sets))
            print(f"round {r + 1}/{args.rounds} ({', '.join(order)}): load average "
                  f"{load:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
    med = {v: {k: statistics.median(x[k] for x in rs) for k in ("epoch", "start", "total",
                                                                  "drain", "cpu")}
           for v, rs in results.items()}
    raw = med["raw"] if "raw" in med else None
    print(f"\n{args.epochs} epochs x {args.rounds} rounds, {REPEAT * 6 // BATCH} steps an epoch, "
          f"tiny EDSR x{SCALE} ({MODEL['num_features']} features, {MODEL['num_blocks']} "
          f"blocks), batch {BATCH}, crop {CROP}; medians over rounds")
    print(f"{'variant':<12} {'s/epoch':>8} {'vs raw':>7} {'start s':>8} {'vs raw':>7} "
          f"{'total s':>8} {'end s':>6} {'CPU s':>7} {'vs raw':>7}")
    for v, m in med.items():
        ratio = (lambda k: f"{m[k] / raw[k]:7.3f}") if raw else (lambda k: "      -")
        print(f"{v:<12} {m['epoch']:8.3f} {ratio('epoch')} {m['start']:8.2f} {ratio('start')} "
              f"{m['total']:8.2f} {m['drain']:6.2f} {m['cpu']:7.2f} {ratio('cpu')}")
    if "rumpy" in results and "rumpy-text" in results:
        # paired by round (same load): what the default outputs add to a whole process
        wall = statistics.median(a["total"] - b["total"] for a, b in
                                 zip(results["rumpy"], results["rumpy-text"]))
        cpu = statistics.median(a["cpu"] - b["cpu"] for a, b in
                                zip(results["rumpy"], results["rumpy-text"]))
        print(f"\nthe defaults add {wall:.2f} s wall and {cpu:.2f} s CPU to the process "
              f"(median over rounds of rumpy - rumpy-text in the same round)")
    if "rumpy" in results:
        print("\nrumpy (defaults), per epoch in the training process, median over epochs and "
              "rounds:")
        parts: dict[str, list[float]] = {}
        for res in results["rumpy"]:
            for k, vals in res["parts"].items():
                parts.setdefault(k, []).extend(vals[1:] or vals)
        for k, vals in sorted(parts.items(), key=lambda kv: -statistics.median(kv[1])):
            print(f"  {k:<14} {statistics.median(vals) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
