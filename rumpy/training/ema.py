"""An exponential moving average of the output network's weights (BasicSR's `ema_decay`,
traiNNer-redux's start step), updated after each optimizer step of that network:

    ema = decay * ema + (1 - decay) * weights      (after `start_step` steps; a copy before)

Buffers (BatchNorm statistics) are copied. Every data-parallel rank holds the same weights after
a step, so every rank's average is the same without communication."""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


class EMA:
    def __init__(self, model: nn.Module, decay: float, start_step: int = 0):
        self.decay = decay
        self.start_step = start_step
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs = None

    def _tensors(self, model: nn.Module):
        if self._pairs is None or self._pairs[0] is not model:
            ema_p = list(self.model.parameters())
            raw_p = list(model.parameters())
            floats = [i for i, p in enumerate(raw_p) if p.is_floating_point()]
            self._pairs = (model, [ema_p[i] for i in floats], [raw_p[i].data for i in floats],
                           list(self.model.buffers()), list(model.buffers()),
                           [ema_p[i] for i in range(len(raw_p)) if i not in set(floats)],
                           [raw_p[i] for i in range(len(raw_p)) if i not in set(floats)])
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """After the network's optimizer step number `step` (1-based over the run)."""
        ema_f, raw_f, ema_b, raw_b, ema_o, raw_o = self._tensors(model)
        if step <= self.start_step:
            torch._foreach_copy_(ema_f, raw_f)
        else:
            torch._foreach_lerp_(ema_f, raw_f, 1.0 - self.decay)
        for e, r in zip(ema_b + ema_o, raw_b + raw_o):
            e.copy_(r)

    def reset(self, model: nn.Module) -> None:
        """The average starts over from `model`'s weights (a fork from a node without one)."""
        self.model.load_state_dict(model.state_dict())

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def warn_short_average(t, steps_per_epoch: int) -> None:
    """An average of weights forgets where it started over ~1/(1 - decay) steps: a run shorter
    than that validates and exports weights still close to those of ema_start_step (0.999 over a
    140-step run scored 8 dB where the raw weights scored 28), which looks like a broken model
    rather than a setting."""
    total = t.num_iterations or t.num_epochs * steps_per_epoch
    span = round(1 / (1 - t.ema_decay))
    if total - t.ema_start_step < span:
        start = "the initial weights" if t.ema_start_step == 0 else \
            f"the weights of step {t.ema_start_step}"
        log.warning("ema_decay %g averages over ~%d optimizer steps, but this run makes %d after "
                    "ema_start_step: the EMA weights it validates and saves will still be mostly "
                    "%s; lower training.ema_decay (or ema_start_step)",
                    t.ema_decay, span, max(0, total - t.ema_start_step), start)
