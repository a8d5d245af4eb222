"""Small decorator registries: models, losses, metrics, optimizers, schedulers and datasets are
looked up by the names a config uses, never imported from it."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, options: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or '' when nothing is close."""
    lowered = {o.lower(): o for o in options}
    key = name.lower()
    close = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.6)
    if not close:  # `hr_dir` for `hr`, `metric` for `metrics`: one name inside the other
        close = sorted((o for o in lowered if len(o) >= 2 and (key.startswith(o) or o.startswith(key))),
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
