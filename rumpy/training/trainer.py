"""The epoch loop: train -> validate -> checkpoint -> summary.csv -> plots -> samples."""
from __future__ import annotations

import logging
import time

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config.load import to_toml_dict
from ..results.plots import plot_summary
from ..results.samples import save_samples
from ..results.summary import SummaryLog, eval_columns, write_table
from .checkpoint import rng_state, save_checkpoint
from .handler import NetworkHandler
from .setup import Run

log = logging.getLogger(__name__)


def train_epoch(handler: NetworkHandler, loader, epoch: int, num_epochs: int) -> float:
    """Mean training loss of one epoch. Losses stay on the device (no per-step sync) except when
    the progress bar shows them."""
    total = torch.zeros((), dtype=torch.float64, device=handler.device)
    bar = tqdm(loader, desc=f"epoch {epoch}/{num_epochs}", leave=False, disable=None,
               dynamic_ncols=True)
    steps = 0
    for steps, (lr, hr) in enumerate(bar, start=1):
        total += handler.train_step(lr, hr)
        if not bar.disable and steps % 10 == 0:
            bar.set_postfix(loss=f"{total.item() / steps:.4f}")
    return total.item() / max(steps, 1)


def _baseline(run: Run) -> dict[str, float]:
    """Bicubic scores per eval set, logged and saved once per run; {summary column: value}."""
    if not run.loaders.evals:
        return {}
    result = run.evaluator.bicubic_baseline()
    sets = list(run.loaders.evals)
    rows = [{"set": s, **result.means[s]} for s in sets]
    write_table(run.folder.outputs / "bicubic_baseline.csv", rows, ["set"] + run.metric_names)
    for row in rows:
        log.info("bicubic baseline on %s: %s", row["set"],
                 ", ".join(f"{m} {row[m]:.4f}" for m in run.metric_names))
    return eval_columns(result.means, sets)


def train(run: Run) -> None:
    cfg, folder, handler = run.cfg, run.folder, run.handler
    num_epochs = cfg.training.num_epochs
    eval_sets = list(run.loaders.evals)
    summary = SummaryLog(folder.summary, run.columns)
    log.info("training %s (x%d, %.2fM parameters) on %s for %d epochs; run folder %s",
             cfg.model.name, cfg.scale,
             sum(p.numel() for p in handler.model.parameters()) / 1e6, run.device, num_epochs,
             folder.root)
    baselines = _baseline(run)
    config_table = to_toml_dict(cfg)
    with logging_redirect_tqdm(loggers=[logging.getLogger("rumpy")]):
        for epoch in range(1, num_epochs + 1):
            start = time.perf_counter()
            learning_rate = handler.learning_rate
            run.loaders.sampler.set_epoch(epoch)
            train_loss = train_epoch(handler, run.loaders.train, epoch, num_epochs)
            handler.end_epoch()
            row = {"epoch": epoch, "train-loss": train_loss, "learning-rate": learning_rate}
            result = None
            if eval_sets and (epoch % cfg.training.eval_frequency == 0 or epoch == num_epochs):
                result = run.evaluator.evaluate(handler)
                row.update(eval_columns(result.means, eval_sets))
            row["epoch-time"] = time.perf_counter() - start

            save_checkpoint(folder.checkpoint(epoch), {
                **handler.state_dict(), "epoch": epoch, "rng": rng_state(),
                "config": config_table, "summary_row": {k: v for k, v in row.items()},
            })
            summary.append(row)
            if result is not None:
                write_table(folder.outputs / f"per_image_epoch_{epoch}.csv", result.per_image,
                            ["set", "image", "loss"] + run.metric_names)
                for set_name, samples in result.samples.items():
                    if samples:
                        save_samples(folder.samples(epoch), set_name, samples)
            if cfg.training.logging == "visual":
                plot_summary(summary.rows, run.columns, folder.outputs, baselines)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                              if k.startswith("val-") and isinstance(v, float))
            log.info("epoch %d/%d: train-loss %.5f, lr %.3g%s (%.1fs)", epoch, num_epochs,
                     train_loss, learning_rate, f", {shown}" if shown else "", row["epoch-time"])
    _report_best(run, summary, baselines)


def _report_best(run: Run, summary: SummaryLog, baselines: dict[str, float]) -> None:
    if not run.metric_names or not run.loaders.evals:
        log.info("finished: %s", run.folder.root)
        return
    col = f"val-{run.metric_names[0]}"
    scored = [r for r in summary.rows if col in r]
    higher = run.evaluator.metrics[0].higher_is_better
    best = (max if higher else min)(scored, key=lambda r: r[col])
    base = baselines.get(col)
    versus = f" (bicubic {base:.4f})" if base is not None else ""
    log.info("finished: best %s %.4f at epoch %d%s; run folder %s", col, best[col], best["epoch"],
             versus, run.folder.root)
