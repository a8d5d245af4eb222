"""What a report shows, read from run folders into plain data (JSON-ready): every node with its
summary rows, lineage, state, best epoch and settings that differ from its tree's root, eval
results, sample images, and the table of each sweep. Reads files only: no torch, one pass per
node (O(nodes))."""
from __future__ import annotations

import base64
import csv
import io
import logging
import math
import re
from pathlib import Path

from ..config.compose import flatten, read_toml
from ..core.columns import STEP_COLUMNS, resolve
from ..core.monitor import Monitor, infer_mode
from ..tree.node import DamagedNode, Node
from ..tree.scan import scan, start_nodes

log = logging.getLogger(__name__)

# Settings that name the run or its place rather than what it trains.
_NOT_SETTINGS = ("experiment", "experiment_save_loc", "training.aim_home")
_SAMPLES = re.compile(r"epoch_(\d+)_samples")
MAX_SAMPLE_EPOCHS = 8     # sample images per node and image: evenly spread, always the newest
SAMPLE_WIDTH = 576        # embedded images: downscaled to this width (JPEG), a small file


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _best(node: Node, rows: list[dict], config: dict) -> dict:
    column = resolve(str(config.get("training.best_load_metric", "val-PSNR")),
                     list(rows[0]) if rows else [])
    try:
        monitor = Monitor(column, infer_mode(column, directions=node.directions()))
    except ValueError:
        return {"column": column}
    monitor.replay([r for r in rows if not r.get("inherited")])
    return {"column": column, "mode": monitor.mode, "value": _finite(monitor.best),
            "epoch": monitor.best_epoch}


def _differing(config: dict, reference: dict) -> dict:
    """The node's settings that differ from the reference's; a key the node's config.toml lacks
    (written before the key existed) is no difference."""
    return {k: v for k, v in sorted(config.items())
            if not k.startswith(_NOT_SETTINGS) and v != reference.get(k)}


def _eval_results(node: Node) -> list[dict]:
    """Each `rumpy eval` folder's average_metrics.csv rows, labelled with the folder."""
    out = []
    for table in sorted((node.path / "eval").glob("*/average_metrics.csv")):
        try:
            with open(table, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            log.warning("%s cannot be read (%s); left out of the report", table, exc)
            continue
        out += [{"run": table.parent.name, **row} for row in rows]
    return out


def _data_uri(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.width > SAMPLE_WIDTH:
                height = round(image.height * SAMPLE_WIDTH / image.width)
                image = image.resize((SAMPLE_WIDTH, height), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); left out of the report", path, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _spread(items: list, count: int) -> list:
    """Up to `count` items evenly spread over `items`, the last always among them."""
    if len(items) <= count:
        return items
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _samples(node: Node, images: list[str] | None) -> list[dict]:
    """The node's own sample images of the chosen images (names as in epoch_N_samples/, e.g.
    'chelsea_chelsea_0'; default: the first image), at up to MAX_SAMPLE_EPOCHS epochs, and the
    val_example_indices strips over epochs."""
    outputs = node.folder.outputs
    epochs = []
    for folder in outputs.glob("epoch_*_samples"):
        found = _SAMPLES.fullmatch(folder.name)
        if found:
            epochs.append((int(found.group(1)), folder))
    epochs.sort()
    out = []
    if epochs:
        names = images or sorted(p.stem for p in epochs[-1][1].glob("*.png"))[:1]
        for name in names:
            for epoch, folder in _spread([e for e in epochs if (e[1] / f"{name}.png").is_file()],
                                         MAX_SAMPLE_EPOCHS):
                uri = _data_uri(folder / f"{name}.png")
                if uri:
                    out.append({"image": name, "epoch": epoch, "src": uri})
    for strip in sorted((outputs / "examples").glob("*/*.png")):
        name = f"{strip.parent.name}_{strip.stem}"
        if images is None or name in images or strip.stem in images:
            uri = _data_uri(strip)
            if uri:
                out.append({"image": name, "epoch": None, "src": uri})
    return out


def _node(node: Node, tree_id: str, root_config: dict, images: list[str] | None,
          with_samples: bool) -> dict:
    node_id = f"{tree_id}/{node.rel}" if node.rel else tree_id
    parent = node.parent if node.rel else None
    record = {"id": node_id, "tree": tree_id, "rel": node.rel or ".", "name": node.name,
              "parent": (f"{tree_id}/{parent.rel}" if parent and parent.rel else tree_id)
              if parent else None,
              "depth": node.rel.count("/") + 1 if node.rel else 0}
    try:
        record["fork_epoch"] = node.fork_epoch if node.rel else None
        rows = node.summary()
        record["state"] = node.state()
    except DamagedNode as exc:
        record.update(state="damaged", error=str(exc), rows=[], columns=[], best={},
                      settings={}, eval=[], samples=[], fork_epoch=None)
        return record
    try:
        config = flatten(read_toml(node.folder.config))
    except Exception as exc:  # a damaged config.toml still gets its node in the report
        log.warning("%s cannot be read (%s)", node.folder.config, exc)
        config = {}
    columns = list(dict.fromkeys(c for r in rows for c in r
                                 if c not in ("epoch", "inherited", *STEP_COLUMNS)))
    # A step-based run's validations are drawn at their optimizer step (its "epochs" are
    # validation periods, a count no user set): every position below is in the node's unit.
    at = _positions(rows)
    record["unit"] = "step" if at else "epoch"
    where = (lambda epoch: at.get(epoch, epoch)) if at else (lambda epoch: epoch)
    record["columns"] = columns
    record["rows"] = [[where(r["epoch"]), 1 if r.get("inherited") else 0] +
                      [_finite(r.get(c)) for c in columns] for r in rows]
    own = [where(r["epoch"]) for r in rows if not r.get("inherited")]
    record["epochs"] = [own[0], own[-1]] if own else None
    if record["fork_epoch"]:
        record["fork_epoch"] = where(record["fork_epoch"])
    record["best"] = _best(node, rows, config) if rows else {}
    if record["best"].get("epoch"):
        record["best"]["epoch"] = where(record["best"]["epoch"])
    record["settings"] = _differing(config, root_config)
    record["stop_reason"] = node.status.get("stop_reason")
    record["eval"] = _eval_results(node)
    record["samples"] = _samples(node, images) if with_samples else []
    for sample in record["samples"]:
        if sample["epoch"] is not None:
            sample["epoch"] = where(sample["epoch"])
    return record


def _positions(rows: list[dict]) -> dict[int, int]:
    """{epoch: optimizer step} of a step-based node's rows; empty for an epoch-based one."""
    out = {}
    for row in rows:
        step = row.get("step")
        if isinstance(step, (int, float)) and math.isfinite(step):
            out[row["epoch"]] = int(step)
    return out


def _sweep_table(folder: Path) -> tuple[object, list[str], list[str]]:
    """(table, grouping keys, metrics): a grid's mean ± std per setting (rumpy table), or a
    search's row per trial."""
    from ..sweep.run import read_manifest  # pandas (and optuna for a search): only for sweeps

    if read_manifest(folder).search is None:
        from ..sweep.table import build_table

        return build_table(folder, every_state=True)
    from ..sweep.search_table import build_search_table

    table, sweep = build_search_table(folder)
    return table, ["trial", *sweep.search.space, "state"], [sweep.search.metric]


def _sweeps(folder: Path) -> list[dict]:
    if (folder / "config.toml").is_file():
        return []  # a run folder's report: its tree
    out = []
    for sweep in scan(folder)[1]:
        try:
            table, keys, metrics = _sweep_table(sweep)
        except Exception as exc:  # a damaged manifest or study: the rest of the report stands
            log.warning("sweep %s: %s; left out of the report", sweep, exc)
            continue
        rows = [{c: (None if isinstance(v, float) and math.isnan(v) else v)
                 for c, v in rec.items()} for rec in table.to_dict("records")]
        out.append({"name": sweep.relative_to(folder).as_posix() if sweep != folder
                    else folder.name, "keys": keys, "metrics": metrics, "rows": rows})
    return out


def collect(folder: Path, images: list[str] | None = None, samples: bool = True) -> dict:
    """Everything the report draws, for a run folder (its subtree) or a folder of runs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    roots = start_nodes(folder)
    if not roots:
        raise FileNotFoundError(f"{folder}: no run folders (with config.toml) in it")
    base = folder.resolve() if not (folder / "config.toml").is_file() else roots[0].root.parent
    first_config: dict | None = None
    nodes = []
    for start in roots:
        top = Node(start.root, "")
        try:
            root_config = flatten(read_toml(top.folder.config))
        except Exception:  # a damaged config.toml: its node says so (_node)
            root_config = {}
        if first_config is None:
            first_config = root_config
        tree_id = start.root.relative_to(base).as_posix()
        pending = [start]
        while pending:
            node = pending.pop(0)
            # a root is compared with the first tree's root: the settings a sweep's cells vary
            ref = root_config if node.rel else first_config
            nodes.append(_node(node, tree_id, ref, images, samples))
            try:
                pending = node.children() + pending  # depth first: a branch under its parent
            except OSError:
                pass
    units = {n.get("unit", "epoch") for n in nodes}
    return {"title": folder.resolve().name, "folder": str(folder.resolve()), "nodes": nodes,
            "unit": units.pop() if len(units) == 1 else "epoch or step",
            "sweeps": _sweeps(folder.resolve())}
