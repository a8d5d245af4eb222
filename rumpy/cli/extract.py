"""`rumpy extract NODE --epoch best|last|N [-o DIR]`: one epoch's model and the node's config out
of the result tree (the original tool's `extract_best_model`), into a new folder that is itself a
one-epoch node: rumpy.load_experiment, `rumpy eval`, `rumpy export-model` and `rumpy tree` take
it as they take the original node at that epoch, and `init_weights_path` can start a new run from
it. Its config.toml still names the original run, so it is not for continuing or forking.

    DIR/config.toml                       the node's config, unchanged
    DIR/status.json                       state "extracted": where from, which epoch, checksum
    DIR/result_outputs/summary.csv        the epoch's row
    DIR/saved_models/epoch_N.pt[.sha256]  the checkpoint, verified (weights_N.pt: weights only)

The folder is built under a hidden temporary name beside DIR and renamed into place, so it
appears whole or not at all."""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .args import epoch as epoch_arg

log = logging.getLogger("rumpy")


class ExtractError(ValueError):
    """An extraction that cannot be done as asked; nothing has been written."""


def _target_problem(target: Path) -> str | None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        return f"{target} exists and is not a folder; give a new folder name"
    if target.is_dir() and any(target.iterdir()):
        return f"{target} is a folder that is not empty; give a new or empty folder"
    for folder in target.resolve().parents:
        if (folder / "config.toml").is_file():  # inside a node it would read as a branch
            return f"{target} is inside the run folder {folder}; write it elsewhere"
    return None


def _choose_epoch(node, choice, training: dict) -> int:
    from ..tree.plan import best_saved_epoch

    saved = node.saved_epochs()
    if not saved:
        raise ExtractError(f"{node.path} has no saved checkpoint")
    if choice == "last":
        return max(saved)
    if choice == "best":
        try:
            epoch, metric, _ = best_saved_epoch(node, training.get("best_load_metric") or
                                                "val-PSNR")
        except ValueError as exc:
            raise ExtractError(f"{node.folder.config}: training.best_load_metric: {exc}") from None
        if epoch is None:
            raise ExtractError(f"{node.path}: no saved epoch has a {metric} value; pass --epoch N "
                               f"(saved epochs: {', '.join(map(str, saved))})")
        return epoch
    if choice not in saved:
        raise ExtractError(f"{node.path} has no checkpoint of epoch {choice} (saved epochs: "
                           f"{', '.join(map(str, saved))})")
    return choice


def default_name(node, epoch: int) -> str:
    """quickstart_epoch_39; a branch: quickstart-lr_half_epoch_38."""
    parts = [node.root.name] + (node.rel.split("/") if node.rel else [])
    return f"{'-'.join(parts)}_epoch_{epoch}"


def extract(path, choice="best", output: Path | None = None, weights_only: bool = False) -> Path:
    """Extracts epoch `choice` of the node at `path` into `output` (default: a folder named after
    the node and epoch in the working directory); returns the folder."""
    from ..config.compose import read_toml
    from ..core.errors import InferenceError
    from ..tree.find import find_node
    from ..core.summary import INHERITED, write_table
    from ..core.checkpoint import (WEIGHTLESS_PARTS, CorruptCheckpoint, is_weights_only,
                                       load_checkpoint, save_checkpoint)
    from ..tree.node import DamagedNode, write_json
    from ..utils.atomic import atomic_write_bytes, dir_mode

    try:
        node = find_node(path)
        training = read_toml(node.folder.config).get("training", {})
        epoch = _choose_epoch(node, choice, training)
    except (InferenceError, DamagedNode, OSError) as exc:
        raise ExtractError(str(exc)) from None
    source = node.checkpoint_for(epoch)
    target = Path(output) if output is not None else Path.cwd() / default_name(node, epoch)
    problem = _target_problem(target)
    if problem:
        raise ExtractError(f"-o: {problem}")
    try:
        state = load_checkpoint(source)  # only a verified checkpoint leaves the tree
    except CorruptCheckpoint as exc:
        raise ExtractError(str(exc)) from None
    row = next((r for r in node.summary() if r["epoch"] == epoch), state.get("summary_row"))
    if not row:
        raise ExtractError(f"{node.path}: neither summary.csv nor {source.name} has the row of "
                           f"epoch {epoch}")
    row = {**row, INHERITED: 0}  # the extracted node trained nothing itself, and has no parent

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting",
                                dir=target.parent))
    try:
        os.chmod(tmp, dir_mode())
        (tmp / "saved_models").mkdir()
        (tmp / "result_outputs").mkdir()
        atomic_write_bytes(tmp / "config.toml", node.folder.config.read_bytes())
        if weights_only or is_weights_only(state):
            name = f"weights_{epoch}.pt"
            if is_weights_only(state):
                shutil.copyfile(source, tmp / "saved_models" / name)
                shutil.copyfile(source.with_name(source.name + ".sha256"),
                                tmp / "saved_models" / f"{name}.sha256")
            else:
                parts = {k: v for k, v in state["parts"].items() if k not in WEIGHTLESS_PARTS}
                save_checkpoint(tmp / "saved_models" / name, {**state, "parts": parts})
        else:
            name = f"epoch_{epoch}.pt"
            # Copied byte for byte (sidecar first, as save_checkpoint orders them); the sidecar
            # names the file, so it is rewritten for the new name with the same digest.
            digest = source.with_name(source.name + ".sha256").read_text().split()[0]
            atomic_write_bytes(tmp / "saved_models" / f"{name}.sha256",
                               f"{digest}  {name}\n".encode())
            with open(source, "rb") as src, open(tmp / "saved_models" / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
        copied = tmp / "saved_models" / name
        load_checkpoint(copied)  # the copy verifies against its checksum
        write_table(tmp / "result_outputs" / "summary.csv", [row], list(row))
        write_json(tmp / "status.json", {
            "state": "extracted", "extracted_from": str(node.path), "epoch": epoch,
            "checkpoint": str(source), "weights_only": name.startswith("weights_"),
            "sha256": copied.with_name(name + ".sha256").read_text().split()[0]})
        try:
            os.rename(tmp, target)  # onto a missing or empty folder: atomic
        except OSError:
            raise ExtractError(f"-o: {target} appeared meanwhile and is not empty; nothing was "
                               f"written") from None
    except CorruptCheckpoint as exc:
        raise ExtractError(f"the copy does not verify ({exc}); nothing was written") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("extracted epoch %d of %s (%s) into %s", epoch, node.path, source.name, target)
    return target


def _run(args: argparse.Namespace) -> int:
    try:
        target = extract(args.node, args.epoch, Path(args.output) if args.output else None,
                         args.weights_only)
    except ExtractError as exc:
        log.error("rumpy extract: %s", exc)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        log.error("rumpy extract: %s%s", where, exc.strerror or exc)
        return 2
    log.info("load it with rumpy.load_experiment(%r) or `rumpy eval %s`", str(target), target)
    return 0


def add_parsers(sub) -> None:
    ex = sub.add_parser("extract", help="copy one epoch's model and the node's config out of the "
                                        "result tree into a new folder")
    ex.add_argument("node", help="a run folder (Results/<experiment>) or a branch folder in it")
    ex.add_argument("--epoch", type=epoch_arg, default="best", metavar="best|last|N",
                    help="the saved epoch (default: best by the node's best_load_metric; a "
                         "branch's may be one it inherited)")
    ex.add_argument("-o", "--output", metavar="DIR",
                    help="a new (or empty) folder (default: ./<experiment>[-<branch>]_epoch_<N>)")
    ex.add_argument("--weights-only", action="store_true",
                    help="keep only the model (and task state), not the optimizer: weights_N.pt, "
                         "about a third of the size")
    ex.set_defaults(func=_run)
