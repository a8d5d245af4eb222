"""Placeholders in run folder names: `experiment = "{date}_edsr_lr{model.internal_params.lr}"`
or `"edsr/seed{training.seed}"` (a name/version layout). {date} and {time} are the start's
local date and time; {seed} is training.seed; any {section.key} is that key's resolved value."""
from __future__ import annotations

import re
import time
from typing import Any

from ..registry import did_you_mean
from .errors import ConfigError

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _value(cfg, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if hasattr(node, "arch") and part in node.arch:  # an architecture key
            node = node.arch[part]
        elif hasattr(node, "__dataclass_fields__") and part in node.__dataclass_fields__:
            node = getattr(node, part)
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(part)
    if hasattr(node, "__dataclass_fields__") or isinstance(node, (dict, list)):
        raise KeyError(key)
    return node


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def expand_placeholders(cfg, source: str) -> None:
    template = cfg.experiment
    if "{" not in template and "}" not in template:
        return
    now = time.localtime()
    fixed = {"date": time.strftime("%Y-%m-%d", now), "time": time.strftime("%H-%M-%S", now),
             "seed": str(cfg.training.seed)}

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key in fixed:
            return fixed[key]
        try:
            return _text(_value(cfg, key))
        except KeyError:
            raise ConfigError(source, "experiment", f"unknown placeholder {{{key}}}"
                                                    f"{did_you_mean(key, list(fixed))} (use "
                                                    f"{{date}}, {{time}}, {{seed}} or "
                                                    f"{{section.key}} of a set key)") from None

    name = _PLACEHOLDER.sub(replace, template)
    if "{" in name or "}" in name:
        raise ConfigError(source, "experiment", f"unbalanced braces in {template!r}")
    cfg.experiment = name
