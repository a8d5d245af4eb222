"""Model registry. A model class declares `supported_scales` (None = any) and `pre_upsampled`
(True when it expects bicubic-upsampled LR); its constructor's keyword arguments, with type hints
and defaults, are the keys a TOML may set in [model.internal_params]."""
from __future__ import annotations

import inspect
import typing

from torch import nn

from ..registry import Registry, did_you_mean

MODELS: Registry[type[nn.Module]] = Registry("model")


def model_params(name: str) -> dict[str, tuple[typing.Any, typing.Any]]:
    """{parameter: (type hint, default)} of a registered model, `scale` excluded."""
    cls = MODELS.get(name)
    hints = typing.get_type_hints(cls.__init__)
    sig = inspect.signature(cls.__init__)
    return {p.name: (hints.get(p.name), p.default) for p in sig.parameters.values()
            if p.name not in ("self", "scale")}


def _matches(hint: typing.Any, value: typing.Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(hint) in (list, tuple):
        return isinstance(value, list)
    return hint is None or isinstance(value, hint)


def check_model_params(name: str, scale: int, params: dict) -> list[tuple[str, str]]:
    """Problems as (key, message); empty when the model can be built with these values."""
    cls = MODELS.get(name)
    known = model_params(name)
    problems = []
    scales = getattr(cls, "supported_scales", None)
    if scales is not None and scale not in scales:
        problems.append(("scale", f"{name} supports scales {', '.join(map(str, scales))}, "
                                  f"got {scale}"))
    for key, value in params.items():
        if key not in known:
            allowed = ", ".join(known) or "none"
            problems.append((key, f"not a parameter of {name}{did_you_mean(key, list(known))} "
                                  f"(its parameters: {allowed})"))
        elif not _matches(known[key][0], value):
            hint = known[key][0]
            problems.append((key, f"expected {getattr(hint, '__name__', hint)} for {name}, "
                                  f"got {value!r}"))
    return problems


def build_model(name: str, scale: int, params: dict) -> nn.Module:
    cls = MODELS.get(name)
    kwargs = {k: (float(v) if model_params(name)[k][0] is float else v) for k, v in params.items()}
    return cls(scale=scale, **kwargs)
