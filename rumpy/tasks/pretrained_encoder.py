"""`pre_trained_encoder_weights` of a model conditioned on a frozen contrastive encoder
(`contrastiveblindqrcan`): a contrastive node (the epoch `pre_trained_encoder_epoch` names: its
best by its best_load_metric, its last, or a number), or a checkpoint file (a rumpy checkpoint of
one, or the original tool's, whose `network` holds `encoder_q.*`). Checked when training starts,
before anything is written; the encoder's weights are then copied into the new model, whose
checkpoints carry them (eval, predict and export need no other file). The node's config records
the absolute path and the epoch number used, and the log says which."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..config import ConfigError
from ..core.checkpoint import CorruptCheckpoint, load_checkpoint
from ..core.errors import InferenceError
from ..models.contrastive import Encoder

log = logging.getLogger(__name__)

KEY = "model.internal_params.pre_trained_encoder_weights"
EPOCH_KEY = "model.internal_params.pre_trained_encoder_epoch"
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
        self.task, self.path, self.arch = task, path, arch
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
        log.info("pre-trained encoder: %s", self.origin)

    def _fail(self, message: str):
        raise ConfigError(self.task.cfg.source, KEY, message)

    def _weights(self, path: Path) -> tuple[dict, str]:
        if path.is_dir():
            return self._node(path)
        if not path.is_file():
            self._fail(f"not found: {path}; {EXPECTED}")
        if self.arch.get("pre_trained_encoder_epoch", "best") != "best":
            raise ConfigError(self.task.cfg.source, EPOCH_KEY, f"picks an epoch of a node folder; "
                                                               f"{path} is a file")
        try:
            if path.with_name(path.name + ".sha256").is_file():  # rumpy's: verified
                state = load_checkpoint(path)
            else:  # the original tool's, or any torch file (nothing is written beside it)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except CorruptCheckpoint as exc:
            self._fail(str(exc))
        except Exception:  # not a torch file at all: what torch says of it helps no one
            self._fail(f"{path} is not a checkpoint torch can load; {EXPECTED}")
        if not isinstance(state, dict):
            self._fail(f"{path} is not a checkpoint; {EXPECTED}")
        parts = state.get("parts")
        if isinstance(parts, dict):   # rumpy's
            return parts.get("ema") or parts.get("model") or {}, str(path)
        if isinstance(state.get("network"), dict):   # the original tool's
            return state["network"], str(path)
        return state, str(path)       # a bare state dict

    def _node(self, path: Path) -> tuple[dict, str]:
        from ..tree.find import best_epoch, find_node, load_node_config, parse_epoch, saved_epochs
        try:
            wanted = parse_epoch(self.arch.get("pre_trained_encoder_epoch", "best"))
        except InferenceError as exc:
            raise ConfigError(self.task.cfg.source, EPOCH_KEY, str(exc).split(": ", 1)[1]) \
                from None
        try:
            node = find_node(path)
            cfg = load_node_config(node)
            if cfg.task != "contrastive":
                self._fail(f"{path} is a {cfg.task!r} node ({cfg.model.name}); {EXPECTED}")
            saved = saved_epochs(node)
            if not saved:
                self._fail(f"{path} has no saved checkpoint (it stopped before finishing an "
                           f"epoch)")
            if wanted == "best":
                epoch = best_epoch(node, cfg, saved)
                how = f"best epoch by {cfg.training.best_load_metric}"
                self._warn_early_best(epoch, max(saved), cfg.training.best_load_metric)
            elif wanted == "last":
                epoch, how = max(saved), "last epoch"
            elif wanted in saved:
                epoch, how = wanted, "epoch"
            else:
                raise ConfigError(self.task.cfg.source, EPOCH_KEY,
                                  f"{path} has no saved epoch {wanted} (saved: "
                                  f"{', '.join(map(str, sorted(saved)))})")
            checkpoint = node.checkpoint_for(epoch)
            state = load_checkpoint(checkpoint)
        except (InferenceError, CorruptCheckpoint, ValueError) as exc:
            self._fail(f"{exc}")
        self.arch["pre_trained_encoder_epoch"] = epoch  # the node's config records the number
        parts = state["parts"]
        return parts.get("ema") or parts["model"], f"{path} ({how} {epoch} of {max(saved)})"

    @staticmethod
    def _warn_early_best(epoch: int, last: int, metric: str) -> None:
        """A contrastive loss is not comparable across epochs: the queue of keys fills and
        harder negatives join it, so the loss grows as the encoder learns (SupMoCo's went 0.03,
        3.8, ..., 5.2 over 6 epochs) and the lowest train-loss marks an early, weak encoder."""
        if metric.startswith("train-") and epoch < last:
            log.warning("the encoder's best epoch by %s is %d of %d: a contrastive loss grows as "
                        "its queue fills, so this may be an undertrained encoder; "
                        "pre_trained_encoder_epoch = \"last\" (or a number) picks another",
                        metric, epoch, last)

    def prime(self, model) -> None:
        """The new model's encoder: the pre-trained one (a continue's checkpoint replaces it
        with the same weights)."""
        with torch.no_grad():
            model.load_encoder(self.state)
