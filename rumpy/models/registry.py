"""Model registry. A model is registered with the tasks (or task families) it serves (`tasks=("sisr",)`); its
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
# Each task's model_inputs (filled by the Task classes as they are defined): the constructor
# arguments a task supplies from the data, left out of the user's keys.
TASK_INPUTS: dict[str, tuple[str, ...]] = {}


def model_tasks(name: str, scope: tuple[str, ...] | None = None) -> tuple[str, ...]:
    return tuple(MODELS.meta(name, scope).get("tasks", ("sisr",)))


def model_params(name: str, supplied: tuple[str, ...] = (), scope: tuple[str, ...] | None = None
                 ) -> dict[str, tuple[typing.Any, typing.Any]]:
    """{parameter: (type hint, default)} a user may set: every constructor argument but the
    ones the task supplies (`supplied`; by default those of the model's first task)."""
    cls = MODELS.get(name, scope)
    supplied = supplied or TASK_INPUTS.get(model_tasks(name, scope)[0], ())
    hints = typing.get_type_hints(cls.__init__)
    sig = inspect.signature(cls.__init__)
    return {p.name: (hints.get(p.name), p.default) for p in sig.parameters.values()
            if p.name not in ("self",) + tuple(supplied)
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


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


def check_model_params(name: str, params: dict, supplied: tuple[str, ...] = (),
                       scope: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """Problems as (key, message); empty when every key is a parameter of the right type."""
    known = model_params(name, supplied, scope)
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
                    check_limits(MODELS.limits(name, scope), params, defaults)]
    return problems


def build_model(name: str, params: dict, scope: tuple[str, ...] | None = None,
                **supplied) -> nn.Module:
    """The model with the user's parameters and the ones its task supplies from the data."""
    known = model_params(name, tuple(supplied), scope)
    kwargs = {k: (float(v) if known[k][0] is float else v) for k, v in params.items()}
    return MODELS.get(name, scope)(**supplied, **kwargs)
