"""`pre_trained_encoder_weights` of a model conditioned on a frozen contrastive encoder
(`contrastiveblindqrcan`): a contrastive node (its best epoch, by its best_load_metric), or a
checkpoint file (a rumpy checkpoint of one, or the original tool's, whose `network` holds
`encoder_q.*`). Checked when training starts, before anything is written; the encoder's weights
are then copied into the new model, whose checkpoints carry them (eval, predict and export need
no other file). Resolved to an absolute path in the node's config."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import ConfigError
from ..core.checkpoint import CorruptCheckpoint, load_checkpoint
from ..core.errors import InferenceError
from ..models.contrastive import Encoder

KEY = "model.internal_params.pre_trained_encoder_weights"
EXPECTED = ("expected a contrastive encoder's node folder (task 'contrastive': supmoco, "
            "mococontrastive, weakcon) or one of its checkpoint files")


class PretrainedEncoder:
    def __init__(self, task):
        cfg = task.cfg
        arch = cfg.model.internal_params.arch
        given = str(arch.get("pre_trained_encoder_weights") or "")
        if not given:
            task.fail(KEY, f"missing: {EXPECTED}")
        path = Path(given).expanduser()
        if not path.is_absolute() and cfg.source:
            path = (Path(cfg.source).resolve().parent / path).resolve()
        arch["pre_trained_encoder_weights"] = str(path)  # the node's config records it
        self.task, self.path = task, path
        weights, self.origin = self._weights(path)
        encoder = {k[len("encoder_q."):]: v for k, v in weights.items()
                   if k.startswith("encoder_q.")}
        if not encoder:
            self._fail(f"{self.origin} holds no encoder_q.* weights: {EXPECTED}")
        try:
            Encoder().load_state_dict(encoder)
        except RuntimeError as exc:
            why = " ".join(str(exc).split())[:200]
            self._fail(f"{self.origin}: its encoder_q is not DASR's encoder ({why})")
        self.state = encoder

    def _fail(self, message: str):
        raise ConfigError(self.task.cfg.source, KEY, message)

    def _weights(self, path: Path) -> tuple[dict, str]:
        if path.is_dir():
            return self._node(path)
        if not path.is_file():
            self._fail(f"not found: {path}; {EXPECTED}")
        try:
            if path.with_name(path.name + ".sha256").is_file():  # rumpy's: verified
                state = load_checkpoint(path)
            else:  # the original tool's, or any torch file (nothing is written beside it)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except CorruptCheckpoint as exc:
            self._fail(str(exc))
        except Exception as exc:  # not a torch file at all
            why = " ".join(str(exc).split())[:120]
            self._fail(f"{path} cannot be loaded as a checkpoint ({type(exc).__name__}: {why}); "
                       f"{EXPECTED}")
        if not isinstance(state, dict):
            self._fail(f"{path} is not a checkpoint; {EXPECTED}")
        parts = state.get("parts")
        if isinstance(parts, dict):   # rumpy's
            return parts.get("ema") or parts.get("model") or {}, str(path)
        if isinstance(state.get("network"), dict):   # the original tool's
            return state["network"], str(path)
        return state, str(path)       # a bare state dict

    def _node(self, path: Path) -> tuple[dict, str]:
        from ..tree.find import best_epoch, find_node, load_node_config, saved_epochs
        try:
            node = find_node(path)
            cfg = load_node_config(node)
            if cfg.task != "contrastive":
                self._fail(f"{path} is a {cfg.task!r} node ({cfg.model.name}); {EXPECTED}")
            saved = saved_epochs(node)
            if not saved:
                self._fail(f"{path} has no saved checkpoint (it stopped before finishing an "
                           f"epoch)")
            epoch = best_epoch(node, cfg, saved)
            checkpoint = node.checkpoint_for(epoch)
            state = load_checkpoint(checkpoint)
        except (InferenceError, CorruptCheckpoint, ValueError) as exc:
            self._fail(f"{exc}")
        parts = state["parts"]
        return parts.get("ema") or parts["model"], f"{path} (best epoch {epoch})"

    def prime(self, model) -> None:
        """The new model's encoder: the pre-trained one (a continue's checkpoint replaces it
        with the same weights)."""
        with torch.no_grad():
            model.load_encoder(self.state)
