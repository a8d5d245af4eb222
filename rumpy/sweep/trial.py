"""A search trial's nodes and values.

A trial trains one node per seed, `<sweep>/trial=<number>,seed=<seed>`, with the trial's
parameters in its config and the trial's number in its status.json (`optuna_trial`). A promoted
trial (`rumpy sweep FILE --promote T --num_epochs N`) continues trial T's nodes exactly as
branches named `trial_<its number>` forked from their last epoch (a seed T never reached starts
as a new node). Values are read from the nodes' summary.csv, the same way for the study and for
`rumpy table`:

- a step's value (what the pruner reads) is, at epoch e of the trial's k-th seed (k from 0),
  the mean over seeds 0..k of the metric at epoch e, reported at step k * num_epochs + e, so
  every trial is compared with the others at the same seeds and epoch;
- a complete trial's value is the mean over its seeds of each seed's best value of the metric;
- a pruned trial's value is its last step's value (as Optuna records it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import RunConfig
from ..tree.node import Node
from .spec import Cell, Sweep
from .study import NUM_EPOCHS, PROMOTED

TRIAL_STATUS = "optuna_trial"


def root_name(number: int, seed: int) -> str:
    return f"trial={number},seed={seed}"


def branch_name(number: int) -> str:
    """A promoted trial's branch (a branch name has no '=')."""
    return f"trial_{number}"


@dataclass
class TrialCell:
    seed: int
    node: Node
    config: RunConfig

    @property
    def label(self) -> str:
        return f"{self.node.root.name}/{self.node.rel}" if self.node.rel else self.node.root.name


def trial_cells(sweep: Sweep, number: int, params: dict, attrs: dict) -> list[TrialCell]:
    out = []
    source = attrs.get(PROMOTED)
    for seed in sweep.seeds:
        parent = Node(sweep.folder / root_name(source, seed), "") if source is not None else None
        if parent is not None and parent.exists() and parent.own_saved():
            node = Node(parent.root, branch_name(number))
            cfg = sweep.config(Cell(parent.root.name, params, seed))
            if not node.exists():  # forked from the promoted trial's last epoch
                cfg.training.continue_from_epoch = "last"
                cfg.training.new_branch = True
                cfg.training.new_branch_name = node.rel
        else:
            node = Node(sweep.folder / root_name(number, seed), "")
            cfg = sweep.config(Cell(node.root.name, params, seed))
        if source is not None:
            t = cfg.training
            t.num_epochs = int(attrs[NUM_EPOCHS])
            if t.num_iterations:  # a step-based search: its epochs are validation periods
                t.num_iterations = t.num_epochs * t.eval_every_n_steps
        cfg.sweep = {**cfg.sweep, "trial": number, "cell": node.root.name}
        out.append(TrialCell(seed, node, cfg))
    return out


def trial_nodes(sweep: Sweep, number: int, attrs: dict) -> list[Node]:
    """The trial's nodes that exist (without building configs: for tables and plots)."""
    source = attrs.get(PROMOTED)
    out = []
    for seed in sweep.seeds:
        branch = Node(sweep.folder / root_name(source, seed), branch_name(number)) \
            if source is not None else None
        node = branch if branch is not None and branch.exists() else \
            Node(sweep.folder / root_name(number, seed), "")
        if node.exists():
            out.append(node)
    return out


def metric_values(node: Node, metric: str) -> dict[int, float]:
    """epoch -> the metric, for the node's validated epochs (inherited ones included)."""
    out = {}
    for row in node.summary():
        value = row.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[row["epoch"]] = float(value)
    return out


def step_value(earlier: list[dict[int, float]], epoch: int, value: float) -> float:
    values = [v[epoch] for v in earlier if epoch in v] + [value]
    return sum(values) / len(values)


def best_of(values: dict[int, float], mode: str) -> float | None:
    if not values:
        return None
    return max(values.values()) if mode == "max" else min(values.values())


def complete_value(nodes: list[Node], metric: str, mode: str) -> float | None:
    bests = [b for b in (best_of(metric_values(n, metric), mode) for n in nodes) if b is not None]
    return sum(bests) / len(bests) if bests else None


def pruned_value(nodes: list[Node], metric: str) -> float | None:
    """The last step's value: at the pruned node's last validated epoch, the mean over it and
    the seeds before it."""
    series = [metric_values(n, metric) for n in nodes]
    if not series or not series[-1]:
        return None
    epoch = max(series[-1])
    return step_value(series[:-1], epoch, series[-1][epoch])
