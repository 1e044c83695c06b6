"""Typed reading of one TOML table: every error names the key, the bad value and what is allowed.

:class:`Section` reads values out of one table (``[train]``, ``[cumulative]``, ...) and records which keys
were used; :meth:`Section.done` then refuses any key left over, suggesting the closest known key
("did you mean 'epochs'?"). :func:`parse_fields` reads a whole dataclass generically from its field
annotations (booleans strictly, numbers finite, ``X | None``, ``tuple[float, float]``), so a new field
of e.g. ``TrainConfig`` needs no parsing code.

Example::

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Opts:
    ...     lr: float = 0.1
    ...     nesterov: bool = False
    >>> parse_fields(Section({"lr": 0.5}, "opts", "demo.toml"), Opts)
    {'lr': 0.5}
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from netgrow.errors import ConfigError

Fail = Callable[[str, str], ConfigError]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'epochs'?"`` for the closest known name, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Section:
    """Reads typed values out of one TOML table, recording which keys were used."""

    def __init__(self, table: Any, prefix: str, source: str):
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{prefix}] must be a table, got {table!r}")
        self.table, self.prefix, self.source, self.used = table, prefix, source, set()
        self.known: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, value: Any, problem: str, allowed: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key(name)} = {value!r}: {problem}; allowed: {allowed}")

    def has(self, name: str) -> bool:
        return name in self.table

    def raw(self, name: str, default: Any = None) -> Any:
        self.used.add(name)
        return self.table.get(name, default)

    def sub(self, name: str, required: bool = False) -> "Section":
        """The nested table ``name`` (an empty one when absent and not required)."""
        if name not in self.table and required:
            raise ConfigError(f"{self.source}: missing required section [{self.key(name)}]; see docs/cli.md "
                              "for its keys")
        return Section(self.raw(name, {}), self.key(name), self.source)

    def _default(self, name: str, default: Any, allowed: str = "") -> Any:
        """The value of an absent key: ``default``, or an error when the key is required (``...``)."""
        if default is ...:
            raise ConfigError(f"{self.source}: missing required key {self.key(name)}"
                              + (f"; allowed: {allowed}" if allowed else ""))
        self.used.add(name)
        return default

    def str_(self, name: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> Any:
        if name not in self.table:
            return self._default(name, default, ", ".join(choices) if choices else "")
        v = self.raw(name)
        if not isinstance(v, str) or not v:
            raise self.fail(name, v, "must be a non-empty string", ", ".join(choices) if choices else "a string")
        if choices is not None and v not in choices:
            raise self.fail(name, v, "unknown value" + did_you_mean(v, choices), ", ".join(choices))
        return v

    def int_(self, name: str, default: Any = ..., lo: int | None = None, optional: bool = False) -> Any:
        if name not in self.table:
            return self._default(name, default)
        v = self.raw(name)
        if optional and v is None:
            return None
        if not is_int(v) or (lo is not None and v < lo):
            raise self.fail(name, v, "must be an integer" + (f" >= {lo}" if lo is not None else ""),
                            f"integers >= {lo}" if lo is not None else "integers")
        return v

    def float_(self, name: str, default: Any = ..., lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> Any:
        if name not in self.table:
            return self._default(name, default)
        v = self.raw(name)
        return check_float(v, lo, hi, lo_open, hi_open, lambda p, a: self.fail(name, v, p, a))

    def bool_(self, name: str, default: bool) -> bool:
        v = self.raw(name, default)
        if not isinstance(v, bool):
            raise self.fail(name, v, "must be a boolean (true or false, not a string)", "true, false")
        return v

    def per_stage(self, name: str, n: int, default: Any, check: Callable[[Any, Fail], Any]) -> tuple[Any, ...]:
        """A value given once (applies to every stage) or as a list with one entry per stage."""
        v = self.raw(name, default)
        values = v if isinstance(v, list) else [v] * n
        if len(values) != n:
            raise self.fail(name, v, f"needs one entry per stage ({n})", f"a single value or a list of {n}")
        for item in values:
            check(item, lambda p, a, item=item: self.fail(name, v, f"{p} ({item!r})", a))
        return tuple(values)

    def done(self) -> None:
        """Refuse keys nobody read (a typo), naming the closest known key."""
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            k = unknown[0]
            allowed = sorted(self.used | self.known)
            raise self.fail(k, self.table[k], "unknown key" + did_you_mean(k, allowed), ", ".join(allowed))


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "-inf" if lo is None else f"{lo}"
    right = "inf" if hi is None else f"{hi}"
    return f"numbers in {'(' if lo_open or lo is None else '['}{left}, {right}{')' if hi_open or hi is None else ']'}"


def check_float(v: Any, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, fail: Fail) -> float:
    """``v`` as a float; a finite number inside the interval, else ``fail(problem, allowed)`` is raised."""
    allowed = interval(lo, hi, lo_open, hi_open)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise fail("must be a finite number", allowed)
    if lo is not None and (v < lo or (lo_open and v == lo)) or hi is not None and (v > hi or (hi_open and v == hi)):
        raise fail("out of range", allowed)
    return float(v)


def int_check(lo: int) -> Callable[[Any, Fail], None]:
    """A ``per_stage`` check: an integer >= ``lo``."""

    def check(x: Any, fail: Fail) -> None:
        if not is_int(x) or x < lo:
            raise fail("must be an integer", f"integers >= {lo}")

    return check


# ------------------------------------------------------------------------------- generic dataclass parsing


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_type(value: Any, tp: Any, fail: Fail, int_lo: int | None = None) -> Any:
    """``value`` checked (and converted: int -> float, list -> tuple) against the annotation ``tp``.

    ``int_lo``: the smallest integer the field accepts, for the message of a non-integer value."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        if len(options) == 1:
            return check_type(value, options[0], fail, int_lo)
        for option in options:
            try:
                return check_type(value, option, fail, int_lo)
            except ConfigError:
                continue
        allowed = " or ".join(_describe(o) for o in options)
        raise fail(f"must be {allowed}", allowed)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("must be a boolean (true or false, not a string)", "true, false")
        return value
    if tp is int:
        if not is_int(value):
            floor = f" >= {int_lo}" if int_lo is not None else ""
            raise fail(f"must be an integer{floor}", f"integers{floor}")
        return value
    if tp is float:
        return check_float(value, None, None, False, False, fail)
    if tp is str:
        if not isinstance(value, str):
            raise fail("must be a string", "a string")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise fail(f"must be a list", f"a list like {_example(args)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_type(v, args[0], fail) for v in value)
        if len(value) != len(args):
            raise fail(f"needs {len(args)} entries", f"a list like {_example(args)}")
        return tuple(check_type(v, a, fail) for v, a in zip(value, args))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise fail("must be a table", "a table")
        return dict(value)
    return value  # an annotation this reader does not know: the dataclass checks it


def _example(args: tuple[Any, ...]) -> str:
    samples = {float: "0.9", int: "1", str: '"a"', bool: "true"}
    return "[" + ", ".join(samples.get(a, "...") for a in args if a is not Ellipsis) + "]"


def parse_fields(s: Section, cls: type, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keys of table ``s`` checked against the field annotations of dataclass ``cls``.

    Returns only the given keys (plus ``defaults`` for keys not given); unknown keys raise ``ConfigError``
    with a "did you mean". The dataclass's own ``__post_init__`` checks ranges afterwards
    (see :func:`build`)."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    s.known |= set(fields)
    out: dict[str, Any] = {}
    for key in s.table:
        if key not in hints:
            continue
        value = s.raw(key)
        fail = (lambda p, a, key=key, value=value: s.fail(key, value, p, a))
        try:
            out[key] = check_type(value, hints[key], fail)
        except ConfigError:
            out[key] = check_type(value, hints[key], fail, _int_floor(cls, key))

    s.done()
    for key, value in (defaults or {}).items():
        out.setdefault(key, value)
    return out


def _int_floor(cls: type, name: str) -> int | None:
    """The smallest of -1, 0, 1 that ``cls`` accepts for the integer field ``name`` (for messages)."""
    for lo in (-1, 0, 1):
        try:
            cls(**{name: lo})
        except Exception:  # noqa: BLE001 - any refusal means "not allowed"
            continue
        return lo if lo >= 0 else None
    return None


def build(s: Section, cls: type, values: dict[str, Any]) -> Any:
    """``cls(**values)``; a ``ConfigError``/``ValueError`` from its own checks is re-raised naming the key."""
    try:
        return cls(**values)
    except (ConfigError, ValueError, TypeError) as exc:
        text = str(exc)
        bad = next((k for k in sorted(values, key=len, reverse=True)
                    if f"{k}=" in text or f" {k} " in text or f"{k}'" in text), None)
        if bad is None:
            bad = next((k for k in values if k in text), None)
        where = f"{s.key(bad)} = {s.table.get(bad, values[bad])!r}" if bad else f"[{s.prefix}]"
        raise ConfigError(f"{s.source}: {where}: {text}") from None
