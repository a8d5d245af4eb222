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
    """Names -> entries. An entry may be scoped to tasks (`tasks=("sisr", "image")`): a task
    looks names up in its own scopes (its name and the families it declares), so two tasks can
    each have an entry of the same name and one entry can serve several tasks. Unscoped
    entries serve every task."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, list[tuple[tuple[str, ...] | None, T, dict[str, Any]]]] = {}
        self.origins: dict[tuple[str, tuple[str, ...] | None], str] = {}  # plugin entries

    def register(self, name: str, tasks: tuple[str, ...] | list[str] | None = None,
                 **meta: Any) -> Callable[[T], T]:
        key = name.lower()
        scopes = tuple(tasks) if tasks is not None else None

        def add(obj: T) -> T:
            for other, _, _ in self._entries.get(key, []):
                if other is None or scopes is None or set(other) & set(scopes):
                    where = f" for {'/'.join(scopes)}" if scopes else ""
                    raise ValueError(f"{self.kind} '{name}' is registered twice{where}")
            if scopes is not None:
                meta["tasks"] = scopes
            self._entries.setdefault(key, []).append((scopes, obj, meta))
            from . import plugins  # a plugin's entries remember which plugin made them
            if plugins.LOADING is not None:
                self.origins[(key, scopes)] = plugins.LOADING
            return obj

        return add

    def _entry(self, name: str, scope: tuple[str, ...] | str | None):
        key = name.lower()
        scopes = (scope,) if isinstance(scope, str) else scope
        found = [e for e in self._entries.get(key, [])
                 if scopes is None or e[0] is None or set(e[0]) & set(scopes)]
        if not found:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.names(scope))} "
                f"(registered: {', '.join(self.names(scope))})")
        if len(found) > 1:  # no scope given and several tasks have one of this name
            raise UnknownNameError(f"{self.kind} '{name}' exists for several tasks "
                                   f"({', '.join('/'.join(e[0] or ('all',)) for e in found)}); "
                                   f"name the task")
        return found[0]

    def get(self, name: str, scope: tuple[str, ...] | str | None = None) -> T:
        """The entry called `name` that serves `scope` (a task's scopes; None = any, when the
        name is unique)."""
        return self._entry(name, scope)[1]

    def meta(self, name: str, scope: tuple[str, ...] | str | None = None) -> dict[str, Any]:
        return self._entry(name, scope)[2]

    def limits(self, name: str, scope: tuple[str, ...] | str | None = None) -> dict:
        """The declared ranges of the entry's parameters (rumpy/limits.py), or {}."""
        return self.meta(name, scope).get("limits", {})

    def origin(self, name: str, scope: tuple[str, ...] | str | None = None) -> str:
        """'rumpy' or the plugin that registered the entry."""
        entry = self._entry(name, scope)
        return self.origins.get((name.lower(), entry[0]), "rumpy")

    def all(self, name: str) -> list[tuple[tuple[str, ...] | None, T, dict[str, Any]]]:
        """Every entry of this name, whatever its scope: (tasks, entry, meta)."""
        return list(self._entries.get(name.lower(), []))

    def names(self, scope: tuple[str, ...] | str | None = None) -> list[str]:
        scopes = (scope,) if isinstance(scope, str) else scope
        return sorted(k for k, entries in self._entries.items()
                      if any(scopes is None or e[0] is None or set(e[0]) & set(scopes)
                             for e in entries))

    def serves(self, name: str, scope: tuple[str, ...] | str) -> bool:
        scopes = (scope,) if isinstance(scope, str) else scope
        return any(e[0] is None or set(e[0]) & set(scopes)
                   for e in self._entries.get(name.lower(), []))

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
