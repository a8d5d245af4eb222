"""`training.init_weights_path`: a new run starts from another node's epoch or from a weights
file (a rumpy checkpoint, a BasicSR-style {"params": ...} file, the original tool's
{"network": ...} checkpoint, or a plain state_dict), with a fresh optimizer. The original's
meta-attention models' weights, under its names, are converted to rumpy's (models/
original_weights.py). The weights are loaded with weights_only=True and checked against the model
before anything is written; where they came from is recorded in the run's lineage.json."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError, RunConfig
from ..core.checkpoint import CorruptCheckpoint, load_checkpoint, upgrade

log = logging.getLogger(__name__)

KEY = "training.init_weights_path"
# Where other trainers keep the weights inside a saved dict (BasicSR, Lightning, plain scripts,
# the original RUMpy's {"network": ...}).
_WRAPPERS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "network")


def _from_node(cfg: RunConfig, folder: Path) -> tuple[dict, dict]:
    from ..core.errors import InferenceError
    from ..tree.find import best_epoch, find_node, load_node_config

    try:
        node = find_node(folder)
        saved = node.saved_epochs()
        choice = cfg.training.init_weights_epoch
        if choice == "best":
            choice = best_epoch(node, load_node_config(node), saved)
        elif choice == "last":
            choice = max(saved, default=None)
    except (InferenceError, ValueError) as exc:
        raise ConfigError(cfg.source, KEY, str(exc)) from None
    path = saved.get(choice)
    if path is None:
        raise ConfigError(cfg.source, "training.init_weights_epoch",
                          f"{folder} has no checkpoint of epoch {choice} (saved epochs: "
                          f"{', '.join(map(str, saved)) or 'none'})")
    try:
        state = load_checkpoint(path)
    except CorruptCheckpoint as exc:
        raise ConfigError(cfg.source, KEY, str(exc)) from None
    info = {"source": str(node.path), "epoch": choice, "checkpoint": str(path)}
    return _weights(state["parts"], info), info


def _weights(parts: dict, info: dict) -> dict:
    """A checkpoint's EMA weights when it has them (what its node validated and exports, and
    what BasicSR's recipes start the GAN stage from: `param_key_g: params_ema`), else the raw."""
    if parts.get("ema") is not None:
        info["weights"] = "ema"
        return parts["ema"]
    return parts["model"]


def _from_file(cfg: RunConfig, path: Path) -> tuple[dict, dict]:
    if path.with_name(path.name + ".sha256").is_file():
        try:
            data = load_checkpoint(path)
        except CorruptCheckpoint as exc:
            raise ConfigError(cfg.source, KEY, str(exc)) from None
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            why = " ".join(str(exc).split())[:200]
            raise ConfigError(cfg.source, KEY, f"{path} is not a weights file torch can load "
                                               f"safely (weights_only): {why}") from None
    info = {"source": str(path)}
    if isinstance(data, dict) and isinstance(data.get("network"), dict) and \
            isinstance(data.get("model_name"), str):
        info["original_model"] = data["model_name"]  # saved by the original tool
    if isinstance(data, dict) and ("parts" in data or "rng" in data):
        data = upgrade(data)
        info["epoch"] = data.get("epoch")
        data = _weights(data["parts"], info)
    for key in _WRAPPERS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data or \
            not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConfigError(cfg.source, KEY, f"{path} holds no state_dict (a dict of tensors, "
                                           f"or one under {', '.join(_WRAPPERS)})")
    return data, info


def _from_original(cfg: RunConfig, model: nn.Module, weights: dict, info: dict,
                   saved: str | None) -> dict:
    """The original tool's weights for a q-model, under its names, as rumpy's; the weights
    unchanged when they are not the original's. Refused, naming the file and what was
    expected, when they are another model's or the model is not built as the original's."""
    from ..models.original_weights import (from_original, layer_count, looks_original,
                                           settings_needed)

    layout, source, name = model.original_layout(), info["source"], cfg.model.name
    if saved is not None and saved.lower() not in layout.names:
        raise ConfigError(cfg.source, KEY, f"{source} holds the original tool's {saved!r} "
                                           f"weights; expected {name}'s "
                                           f"(model_name {' or '.join(map(repr, layout.names))})")
    for prefix in ("model.module.", "model."):  # older checkpoints of the original's
        if weights and all(k.startswith(prefix) for k in weights):
            stripped = {k[len(prefix):]: v for k, v in weights.items()}
            if looks_original(model, stripped):
                weights = stripped
            break
    if not looks_original(model, weights):
        return weights
    if not any(".attribute_integrator." in k for k in weights):
        raise ConfigError(cfg.source, KEY, f"{source} holds the original tool's {name} weights "
                                           f"without meta-attention (its include_q_layer = "
                                           f"false); expected them in every block, as rumpy's "
                                           f"{name} has them")
    layers = layer_count(weights)
    if layers:
        raise ConfigError(cfg.source, KEY, f"{source} holds the original tool's {name} weights "
                                           f"with {layers}-layer meta-attention "
                                           f"(num_layers_in_q_layer = {layers}); expected 2, "
                                           f"the only depth rumpy's {name} has")
    strict = cfg.training.init_weights_strict
    settings = settings_needed(model, weights)
    if settings and strict:
        first = settings[0].split(" = ")[0]
        raise ConfigError(cfg.source, f"model.internal_params.{first}",
                          f"{source} holds the original tool's {name} weights, whose network "
                          f"needs {', '.join(settings)} in model.internal_params to compute "
                          f"what the original did (or init_weights_strict = false)")
    converted, problems = from_original(model, weights)
    if strict and problems:
        found = [f"{len(x)} {what} (e.g. {x[0]})" for what, x in problems]
        raise ConfigError(cfg.source, KEY, f"{source} does not fit {name} with these settings: "
                                           f"the original tool's weights {', '.join(found)}; set "
                                           f"init_weights_strict = false to load the ones that "
                                           f"fit")
    info["names"] = "the original tool's"
    return converted


def load_init_weights(cfg: RunConfig, model: nn.Module) -> dict | None:
    """Loads the configured weights into `model`; returns what to record in the lineage."""
    source = cfg.training.init_weights_path
    if not source:
        return None
    path = Path(source)
    if path.is_dir():
        weights, info = _from_node(cfg, path)
    elif path.is_file():
        weights, info = _from_file(cfg, path)
    else:
        raise ConfigError(cfg.source, KEY, f"{path} does not exist (expected a run folder or a "
                                           f".pt weights file)")
    # Weights saved from DistributedDataParallel or torch.compile carry a prefix.
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix):]: v for k, v in weights.items()}
    saved = info.pop("original_model", None)
    if hasattr(model, "original_layout"):
        weights = _from_original(cfg, model, weights, info, saved)
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items()
             if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    strict = cfg.training.init_weights_strict
    if strict and (wrong or missing or unexpected):
        problems = [f"{len(x)} {what} (e.g. {x[0]})" for what, x in
                    (("of another shape", wrong), ("missing", missing),
                     ("not in the model", unexpected)) if x]
        raise ConfigError(cfg.source, KEY, f"{info['source']} does not fit {cfg.model.name} with "
                                           f"these settings: weights {', '.join(problems)}; set "
                                           f"init_weights_strict = false to load the ones that fit")
    skipped = sorted(set(missing) | {w.split(" ")[0] for w in wrong} | set(unexpected))
    matching = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    if not matching:
        raise ConfigError(cfg.source, KEY, f"no weight of {info['source']} fits {cfg.model.name}")
    model.load_state_dict(matching, strict=False)
    digest = hashlib.sha256(b"".join(
        k.encode() + v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        for k, v in sorted(matching.items()))).hexdigest()
    info.update(loaded=len(matching), skipped=skipped, weights_sha256=digest)
    log.info("initial weights from %s%s: %d tensors loaded%s", info["source"],
             f" (epoch {info['epoch']})" if info.get("epoch") else "", len(matching),
             f", {len(skipped)} left as initialised: {', '.join(skipped[:5])}" if skipped else "")
    return info
