"""Model registry. A model is registered with the tasks it serves (`tasks=("sisr",)`); its
constructor's keyword arguments, with type hints and defaults, are the keys a TOML may set in
[model.internal_params], except those its task supplies from the data (`scale` for sisr,
`input_shape` and `num_outputs` for regression). SR models also declare `supported_scales`
(None = any) and `pre_upsampled` (True when they expect bicubic-upsampled LR). `limits` declares
the parameters' ranges (rumpy/limits.py): a size torch would build silently wrong (a negative
block count is an empty network) is refused at its key."""
from __future__ import annotations

import inspect
import typing

from torch import nn

from ..limits import check_limits
from ..registry import Registry, did_you_mean

MODELS: Registry[type[nn.Module]] = Registry("model")


def model_tasks(name: str) -> tuple[str, ...]:
    return tuple(MODELS.meta(name).get("tasks", ("sisr",)))


def model_params(name: str, supplied: tuple[str, ...] = ()) -> dict[str, tuple[typing.Any, typing.Any]]:
    """{parameter: (type hint, default)} a user may set: every constructor argument but the
    ones the task supplies (`supplied`; by default those of the model's first task)."""
    from ..tasks import TASKS

    cls = MODELS.get(name)
    supplied = supplied or TASKS.get(model_tasks(name)[0]).model_inputs
    hints = typing.get_type_hints(cls.__init__)
    sig = inspect.signature(cls.__init__)
    return {p.name: (hints.get(p.name), p.default) for p in sig.parameters.values()
            if p.name not in ("self",) + tuple(supplied)}


def _matches(hint: typing.Any, value: typing.Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(hint) in (list, tuple) or hint in (list, tuple):
        return isinstance(value, list)
    return hint is None or isinstance(value, hint)


def check_model_params(name: str, params: dict) -> list[tuple[str, str]]:
    """Problems as (key, message); empty when every key is a parameter of the right type."""
    known = model_params(name)
    problems = []
    for key, value in params.items():
        if key not in known:
            allowed = ", ".join(known) or "none"
            problems.append((key, f"not a parameter of {name}{did_you_mean(key, list(known))} "
                                  f"(its parameters: {allowed})"))
        elif not _matches(known[key][0], value):
            hint = known[key][0]
            problems.append((key, f"expected {getattr(hint, '__name__', hint)} for {name}, "
                                  f"got {value!r}"))
    if not problems:
        defaults = {k: d for k, (_, d) in known.items() if d is not inspect.Parameter.empty}
        problems = [(k, m.replace(", got ", f" for {name}, got ", 1)) for k, m in
                    check_limits(MODELS.limits(name), params, defaults)]
    return problems


def build_model(name: str, params: dict, **supplied) -> nn.Module:
    """The model with the user's parameters and the ones its task supplies from the data."""
    known = model_params(name)
    kwargs = {k: (float(v) if known[k][0] is float else v) for k, v in params.items()}
    return MODELS.get(name)(**supplied, **kwargs)
