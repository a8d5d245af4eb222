"""`rumpy eval`: a saved epoch of a node scored on test sets by the task's own evaluation code
(Task.evaluate with a handler-like Runner), so the numbers equal training-time validation of
that epoch on the same set. Writes, under <node>/eval/epoch_<N>[_tile<T>][_self_ensemble]/:

    <set>/individual_metrics.csv    one row per image or sample (the per_image/per_sample
                                    columns of training)
    <set>/<image>.png               with save_images (sisr): the 8-bit SR output the metrics saw
    average_metrics.csv             one row per set: the means, and the baseline's beside them
                                    (rows of sets evaluated earlier are kept)
"""
from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..data.images import quantize
from ..core.summary import write_table
from ..utils.atomic import atomic_open
from ..utils.folders import folder_problem, nearest_existing
from .eval_data import eval_config, eval_task
from .load import InferenceError, load_experiment
from .runner import Runner

log = logging.getLogger(__name__)

from ..core.run_folder import EVAL_DIR


@dataclass
class SetScores:
    name: str
    count: int
    means: dict[str, float]          # 'loss' and the metrics (regression: per target too)
    baseline: dict[str, float]


@dataclass
class EvalReport:
    node: Path
    epoch: int
    folder: Path
    task: str
    baseline_name: str
    unit: str = "samples"            # what a set's count counts ("images")
    sets: list[SetScores] = field(default_factory=list)


def eval_folder(node: Path, epoch: int, tile: int | None, ensemble: bool) -> Path:
    """Variants that change the numbers get their own folder; the plain one matches training."""
    name = f"epoch_{epoch}" + (f"_tile{tile}" if tile else "")
    return node / EVAL_DIR / (name + ("_self_ensemble" if ensemble else ""))


class ImageWriter:
    """Saves each SR output as the PNG the metrics scored (clamped, rounded to 8 bits), named by
    its set and image in the order evaluation visits them."""

    def __init__(self, folder: Path, order: list[tuple[str, str]]):
        self.folder = folder
        self.order = iter(order)

    def __call__(self, out: torch.Tensor) -> None:
        for img in quantize(out).byte().permute(0, 2, 3, 1).cpu().numpy():
            set_name, key = next(self.order)
            path = self.folder / set_name / f"{key}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb") as handle:
                Image.fromarray(img).save(handle, format="PNG")


def _merge_averages(path: Path, rows: list[dict], columns: list[str]) -> None:
    """average_metrics.csv with these sets' rows replaced and other sets' rows kept."""
    old_rows, old_columns = [], []
    if path.is_file():
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            old_columns = list(reader.fieldnames or [])
            fresh = {r["set"] for r in rows}
            old_rows = [r for r in reader if r.get("set") not in fresh]
    merged = columns + [c for c in old_columns if c not in columns]
    write_table(path, old_rows + rows, merged)


def evaluate_node(path: str | Path, epoch: int | str = "best", data: str | Path | None = None,
                  save_images: bool = False, self_ensemble: bool = False,
                  tile: int | None = None, tile_overlap: int = 32,
                  device: str | torch.device = "cpu", only_task: str | None = None,
                  metadata_from: str | Path | None = None, weights: str = "ema") -> EvalReport:
    model = load_experiment(path, epoch=epoch, device=device, weights=weights)
    info = model.rumpy
    if only_task is not None and info.task != only_task:
        raise InferenceError(f"{info.path} is a {info.task} model; use `rumpy eval` for it")
    if save_images and not info.task_object.image_outputs:
        raise InferenceError(f"--save-images is for models whose outputs are images (task "
                             f"{info.task!r}: the predictions are in individual_metrics.csv)")
    cfg = eval_config(info, data)
    device = torch.device(device)
    task, order = eval_task(info, cfg, device, own_sets=data is None)
    if metadata_from is not None:
        if not getattr(task, "takes_metadata", False):
            raise InferenceError(f"{info.path}: {info.model_name} takes no degradation metadata; "
                                 f"--metadata-from is for conditioned models")
        from .blind import use_predicted_metadata
        use_predicted_metadata(task, cfg, metadata_from, device)
    if not order:
        raise InferenceError(f"{info.path} has no eval sets; pass a data TOML (--data) with "
                             f"[data.eval_sets.NAME] tables")
    folder = eval_folder(info.path, info.epoch, tile, self_ensemble)
    if metadata_from is not None:  # other numbers than with the recorded metadata
        folder = folder.with_name(f"{folder.name}_metadata_from_{Path(metadata_from).name}")
    if (info.path / EVAL_DIR / "config.toml").is_file():
        raise InferenceError(f"{info.path / EVAL_DIR} is a branch named '{EVAL_DIR}'; rumpy eval "
                             f"cannot write its results there")
    writer = None
    if save_images:
        writer = ImageWriter(folder, [(name, key) for name, keys in order for key in keys])
    # Checks the tiling settings: a refusal must come before the folder exists.
    runner = Runner(model, info, task, tile=tile, overlap=tile_overlap, ensemble=self_ensemble,
                    on_output=writer)
    problem = folder_problem(folder)
    if problem:
        raise InferenceError(f"eval folder: {problem}; rumpy eval writes its results there")
    made = nearest_existing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = task.evaluate(runner, with_outputs=False)
    except BaseException:
        if made != folder:  # what this call made, and only that, goes again
            shutil.rmtree(made / folder.relative_to(made).parts[0], ignore_errors=True)
        raise
    baseline = task.baseline()
    report = EvalReport(info.path, info.epoch, folder, info.task, task.baseline_name,
                        task.sample_unit)
    columns = task.per_sample_columns()
    keys = task.summary_keys()
    prefix = task.baseline_name.replace(" ", "_")
    averages = []
    for name, ids in order:
        rows = [r for r in result.per_sample if r["set"] == name]
        (folder / name).mkdir(exist_ok=True)
        write_table(folder / name / "individual_metrics.csv", rows, columns)
        scores = SetScores(name, len(ids), result.means[name], baseline.get(name, {}))
        report.sets.append(scores)
        averages.append({"set": name, "count": len(ids), "epoch": info.epoch, **scores.means,
                         **{f"{prefix}-{k}": v for k, v in scores.baseline.items()}})
    base_keys = [f"{prefix}-{k}" for k in keys if k != "loss"]
    _merge_averages(folder / "average_metrics.csv", averages,
                    ["set", "count", "epoch"] + keys + base_keys)
    log.info("evaluated %s epoch %d on %s; results in %s", info.path, info.epoch,
             ", ".join(n for n, _ in order), folder)
    return report


def report_lines(report: EvalReport) -> list[str]:
    """One console line per set: the means and the baseline's."""
    lines = []
    unit = report.unit
    for s in report.sets:
        shown = [k for k in s.means if k != "loss" and "-" not in k]
        ours = ", ".join(f"{k} {s.means[k]:.4f}" for k in shown)
        theirs = ", ".join(f"{k} {s.baseline[k]:.4f}" for k in shown if k in s.baseline)
        lines.append(f"{s.name} ({s.count} {unit}, epoch {report.epoch}): {ours}  "
                     f"[{report.baseline_name}: {theirs}]")
    return lines
