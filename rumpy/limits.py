"""Declared ranges of component parameters, registered beside each component
(`MODELS.register("edsr", limits={...})`, the same for optimizers, schedulers and losses).

torch checks some arguments when a component is built, many only when it is used (a cosine
schedule with T_max = 0 divides by zero at its first step), and some never (a negative block
count builds an empty network; RMSprop's alpha > 1 diverges after a while). Declaring the range
once per parameter lets the config be refused before anything is written, with the key named."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Limit:
    """The values one parameter accepts. A bound may name another parameter of the same
    component (`high="num_features"`), compared with that parameter's value or default."""

    integer: bool = False
    low: float | str | None = None
    high: float | str | None = None
    low_open: bool = False            # `low` itself excluded
    high_open: bool = False
    items: int | None = None          # a list: exactly this many values (0 = any number, >= 1)
    increasing: bool = False          # a list: strictly increasing
    odd: bool = False
    multiple_of: int | None = None
    or_list: bool = False             # a value, or a list of such values (one per group)

    def _bound(self, bound: float | str | None, params: dict) -> tuple[float | None, str]:
        if isinstance(bound, str):
            other = params.get(bound)
            return (other, f"{bound} ({other})") if _is_number(other) else (None, "")
        return bound, f"{bound:g}" if bound is not None else ""

    def _range(self, params: dict) -> str:
        low, low_text = self._bound(self.low, params)
        high, high_text = self._bound(self.high, params)
        if low is not None and high is not None and not isinstance(self.low, str) \
                and not isinstance(self.high, str):
            return (f" in {'(' if self.low_open else '['}{low_text}, {high_text}"
                    f"{')' if self.high_open else ']'}")
        parts = []
        if low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {low_text}")
        if high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {high_text}")
        return " " + " and ".join(parts) if parts else ""

    def describe(self, params: dict) -> str:
        rng = self._range(params)
        if self.items is not None:
            kind = ("odd integers" if self.odd else "integers") if self.integer else "numbers"
            size = f"list of {self.items} " if self.items else "non-empty list of "
            order = ", strictly increasing" if self.increasing else ""
            return f"a {size}{kind}{rng}{order}"
        one = ("an odd integer" if self.odd else "an integer") if self.integer else "a number"
        if self.multiple_of:
            one = f"a multiple of {self.multiple_of}"
        return one + rng + (" (or a list of them, one per parameter group)" if self.or_list else "")

    def _fits(self, value: Any, params: dict) -> bool:
        if not (_is_int(value) if self.integer else _is_number(value)) or not math.isfinite(value):
            return False
        low, _ = self._bound(self.low, params)
        high, _ = self._bound(self.high, params)
        if low is not None and (value <= low if self.low_open else value < low):
            return False
        if high is not None and (value >= high if self.high_open else value > high):
            return False
        return not (self.odd and value % 2 == 0) and \
            not (self.multiple_of and value % self.multiple_of)

    def problem(self, value: Any, params: dict) -> str | None:
        """None when `value` fits, else 'expected ..., got ...'; `params` are the component's
        parameters (user values over defaults), for bounds that name another parameter."""
        if self.items is not None:
            ok = (isinstance(value, list) and (len(value) == self.items if self.items else value)
                  and all(self._fits(v, params) for v in value)
                  and not (self.increasing and any(b <= a for a, b in zip(value, value[1:]))))
        elif self.or_list and isinstance(value, list):
            ok = bool(value) and all(self._fits(v, params) for v in value)
        else:
            ok = self._fits(value, params)
        return None if ok else f"expected {self.describe(params)}, got {value!r}"


def count(low: int = 0, **kw: Any) -> Limit:
    """An integer >= low (sizes, steps, epochs)."""
    return Limit(integer=True, low=low, **kw)


def number(low: float | None = None, high: float | None = None, *, above: float | None = None,
           below: float | None = None, **kw: Any) -> Limit:
    """A finite number; `above`/`below` exclude the bound itself."""
    return Limit(low=above if above is not None else low, high=below if below is not None else high,
                 low_open=above is not None, high_open=below is not None, **kw)


FRACTION = number(0, below=1)             # [0, 1): betas, RMSprop's alpha, dropout
NON_NEGATIVE = number(0)
POSITIVE = number(above=0)


def check_limits(limits: dict[str, Limit], given: dict, defaults: dict | None = None) -> \
        list[tuple[str, str]]:
    """(key, message) for every given parameter outside its declared range."""
    merged = {**(defaults or {}), **given}
    return [(key, message) for key, value in given.items() if key in limits
            for message in [limits[key].problem(value, merged)] if message]
