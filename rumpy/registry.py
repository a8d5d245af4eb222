"""Small decorator registries: models, losses, metrics, optimizers, schedulers and datasets are
looked up by the names a config uses, never imported from it."""
from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


# Words a name may carry beyond an option without meaning something else (`hr_dir` for `hr`).
_GENERIC = {"dir", "path", "folder", "file", "name", "s", "es"}
_WORDS = re.compile(r"[_.\-]+")


def _differing(a: str, b: str) -> tuple[str, str]:
    """What is left of two names once the words they share at either end are set aside:
    ('model_cleanup', 'eval') for model_cleanup_frequency and eval_frequency."""
    x, y = _WORDS.split(a), _WORDS.split(b)
    while x and y and x[0] == y[0]:
        x, y = x[1:], y[1:]
    while x and y and x[-1] == y[-1]:
        x, y = x[:-1], y[:-1]
    return "_".join(x), "_".join(y)


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _extra_is_generic(extra: str) -> bool:
    extra = extra.strip("_.-")
    return len(extra) <= 1 or extra in _GENERIC


def _similar(name: str, option: str) -> bool:
    """A typo of `option`: alike where the two differ, not only in a word they share
    (`model_cleanup_frequency` is no typo of `eval_frequency`, nor `lr_min` of `lr`)."""
    a, b = _differing(name, option)
    if not a or not b:  # one is the other plus words: a generic one, or a small part of it
        return _extra_is_generic(a or b) or _ratio(name, option) >= 0.75
    if _ratio(a, b) >= 0.7:
        return True
    short, long = sorted((a, b), key=len)  # `freq` for `frequency`, `xx` for `x`
    rest = long[len(short):]
    return long.startswith(short) and (len(rest) == 1 or
                                       (len(short) >= 3 and not _WORDS.search(rest)))


def did_you_mean(name: str, options: list[str]) -> str:
    """'; did you mean 'x'?' for the closest option, or '' when nothing is really close."""
    lowered = {o.lower(): o for o in options}
    key = name.lower()
    close = [o for o in difflib.get_close_matches(key, list(lowered), n=max(1, len(lowered)),
                                                  cutoff=0.6) if _similar(key, o)]
    if not close:  # `hr_dir` for `hr`, `metric` for `metrics`: one name inside the other
        close = sorted((o for o in lowered if len(o) >= 2 and o != key and
                        (key.startswith(o) or o.startswith(key)) and
                        _extra_is_generic(key[len(o):] if key.startswith(o) else o[len(key):])),
                       key=len, reverse=True)[:1]
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


class UnknownNameError(LookupError):
    """A name that no entry of a registry answers to; the message lists what is registered."""


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        key = name.lower()

        def add(obj: T) -> T:
            if key in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[key] = obj
            self._meta[key] = meta
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name.lower()]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())} "
                f"(registered: {', '.join(self.names())})"
            ) from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name.lower()]

    def limits(self, name: str) -> dict:
        """The declared ranges of the entry's parameters (rumpy/limits.py), or {}."""
        return self.meta(name).get("limits", {})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
