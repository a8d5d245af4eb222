"""The names inside a node folder, declared by whoever writes them: the tree (config, log,
lineage, status, checkpoints), the callbacks (summary, plots, samples), each task (its per-sample
CSVs), each tracker (tensorboard/), `rumpy eval` (eval/) and `rumpy export-model` (export/).
The tree's checks ("is this a rumpy run, and is anything foreign in it"; which names a branch
may not take) read these declarations, so a new writer, a plugin's too, needs no edit here.

    declare("node", "tensorboard", "the tensorboard tracker")       # a file or folder name
    declare("result_outputs", r"per_image_epoch_\\d+\\.csv", "task sisr")  # a regular expression
"""
from __future__ import annotations

import re

PLACES = ("node", "result_outputs", "saved_models")
_DECLARED: dict[str, dict[str, str]] = {place: {} for place in PLACES}


def declare(place: str, pattern: str, writer: str) -> None:
    """`pattern` (a regular expression matched against the whole name) is written by `writer`
    directly inside the node folder ('node') or inside one of its rumpy folders."""
    if place not in _DECLARED:
        raise ValueError(f"place must be one of {', '.join(PLACES)}, got {place!r}")
    re.compile(pattern)
    _DECLARED[place].setdefault(pattern, writer)


def writer_of(place: str, name: str) -> str | None:
    """Who declared `name` in `place` (None: nobody, so rumpy did not make it)."""
    for pattern, writer in _DECLARED[place].items():
        if re.fullmatch(pattern, name):
            return writer
    return None


def reserved_names() -> set[str]:
    """Plain names declared directly inside a node: no branch may be called so."""
    plain = (p.replace("\\.", ".") for p in _DECLARED["node"])
    return {p for p in plain if re.fullmatch(r"[\w.\-]+", p)}


# The tree's own names.
for _name in ("config\\.toml", "train\\.log", "lineage\\.json", "status\\.json", "\\.lock",
              "saved_models", "result_outputs"):
    declare("node", _name, "the result tree")
declare("saved_models", r"(epoch_\d+|weights_\d+|interrupted|last|best)\.pt(\.sha256)?"
                        r"(\.corrupt)?", "checkpoints")
