"""Parameters of a search space: ``Choice``, ``IntRange``, ``FloatRange`` and ``PerLayer``.

Each parameter knows how to check a value (returning its canonical form), sample one,
list its values when it is discrete, and describe itself as JSON. ``PerLayer`` is a repeated
block of parameters whose count is fixed or named by a sibling integer parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from archlab.core.numbers import show_int

from .errors import SpaceError

Scalar = int | float | str | bool | None
_NO_DEFAULT: Any = object()  # Choice(default=...) not given (None is a valid choice value)

# Documented limits that keep every space countable, encodable and printable in bounded time
# and memory: a repeat count (``PerLayer``) of at most MAX_LAYERS blocks, at most MAX_BLOCKS
# blocks in one architecture (nested ``PerLayer`` multiply), and integer bounds within
# +-MAX_INT (exact in float64, the type architectures are encoded in).
MAX_LAYERS = 1000
MAX_BLOCKS = 100_000
MAX_INT = 2**53


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _show(values: tuple[Any, ...]) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


def _to_python(v: Any) -> Any:
    """numpy scalars -> Python scalars (JSON and hashing need plain values)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


class Param:
    """Base of every search-space parameter."""

    kind: ClassVar[str] = ""

    @property
    def is_discrete(self) -> bool:
        return True

    @property
    def is_ordered(self) -> bool:
        """True when values have an order, so ``smallest``/``largest`` are defined."""
        return True

    def validate(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def values(self) -> tuple[Any, ...]:
        """Every allowed value, in order (discrete parameters only)."""
        raise NotImplementedError

    def n_values(self) -> int:
        """How many values ``values()`` has, without building them."""
        return len(self.values())

    def low(self) -> Any:
        raise NotImplementedError

    def high(self) -> Any:
        raise NotImplementedError

    def extreme(self, which: str) -> Any:
        """The value ``smallest()`` (``"low"``) or ``largest()`` (``"high"``) of a space takes."""
        return self.low() if which == "low" else self.high()

    def allowed(self) -> str:
        """Human-readable description of the allowed values, used in error messages."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


class Choice(Param):
    """One of a fixed set of values.

    Numbers form an *ordered* choice (``Choice(64, 128, 192)``); strings, booleans or mixed
    values form an unordered *categorical* choice (``Choice("relu", "gelu")``). A categorical
    choice has no smallest or largest value: ``space.smallest()`` / ``largest()`` (and so the
    sandwich rule's extreme subnets) take its ``default``, the first value unless given
    (``Choice("relu", "gelu", default="gelu")``).
    """

    kind = "choice"

    def __init__(self, *values: Scalar, default: Scalar = _NO_DEFAULT) -> None:
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = tuple(values[0])
        if not values:
            raise SpaceError("Choice() needs at least one value")
        clean = tuple(_to_python(v) for v in values)
        for v in clean:
            if not isinstance(v, (int, float, str, bool, type(None))):
                raise SpaceError(
                    f"Choice value {v!r} has type {type(v).__name__}; allowed: int, float, str, bool, None"
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise SpaceError(f"Choice value {v!r} is not finite")

        self._numeric = all(_is_number(v) for v in clean)
        seen: list[Any] = []
        for v in clean:
            if any(self._same(v, s) for s in seen):
                raise SpaceError(f"Choice has the value {v!r} twice: {_show(clean)}")
            seen.append(v)
        self._values = clean
        self._default_given = default is not _NO_DEFAULT
        self.default = self.validate(default, "default") if self._default_given else clean[0]

    def _same(self, a: Any, b: Any) -> bool:
        if self._numeric:
            return bool(a == b)
        return type(a) is type(b) and a == b

    @property
    def is_ordered(self) -> bool:
        return self._numeric

    @property
    def is_integer(self) -> bool:
        return self._numeric and all(isinstance(v, int) for v in self._values)

    def validate(self, value: Any, path: str) -> Any:
        value = _to_python(value)
        if self._numeric and _is_number(value):
            for v in self._values:
                if v == value:
                    return v
        elif not self._numeric:
            for v in self._values:
                if type(v) is type(value) and v == value:
                    return v
        raise SpaceError(f"{_short(value)} is not allowed; allowed: {self.allowed()}", path)

    def sample(self, rng: np.random.Generator) -> Any:
        return self._values[int(rng.integers(len(self._values)))]

    def values(self) -> tuple[Any, ...]:
        return self._values

    def _require_order(self, what: str) -> None:
        if not self._numeric:
            raise SpaceError(
                f"{what} is not defined for the unordered choice {{{_show(self._values)}}}; "
                "only numeric choices are ordered (smallest()/largest() use the choice's default, "
                f"{self.default!r}; set it with Choice(..., default=VALUE))"
            )

    def low(self) -> Any:
        self._require_order("the smallest value")
        return min(self._values)

    def high(self) -> Any:
        self._require_order("the largest value")
        return max(self._values)

    def extreme(self, which: str) -> Any:
        """``low()`` / ``high()`` of an ordered choice; ``default`` of a categorical one."""
        return super().extreme(which) if self._numeric else self.default

    def allowed(self) -> str:
        return _show(self._values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "choice", "values": list(self._values)}
        if self._default_given:  # only when given, so existing spaces keep their fingerprints
            out["default"] = self.default
        return out

    def __repr__(self) -> str:
        extra = f", default={self.default!r}" if self._default_given else ""
        return f"Choice({_show(self._values)}{extra})"


class IntRange(Param):
    """An integer in ``[low, high]`` (both included) on a grid of ``step``."""

    kind = "int"

    def __init__(self, low: int, high: int, step: int = 1) -> None:
        for name, v in (("low", low), ("high", high), ("step", step)):
            if not isinstance(_to_python(v), int) or isinstance(v, bool):
                raise SpaceError(f"IntRange {name} must be an int, got {v!r}")
        low, high, step = int(low), int(high), int(step)
        if low > high:
            raise SpaceError(f"IntRange low={low} is greater than high={high}")
        if step < 1:
            raise SpaceError(f"IntRange step must be >= 1, got {step}")
        if (high - low) % step:
            raise SpaceError(f"IntRange high - low = {high - low} is not a multiple of step={step}")
        self._low, self._high, self.step = low, high, step

    @property
    def is_integer(self) -> bool:
        return True

    def validate(self, value: Any, path: str) -> int:
        value = _to_python(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpaceError(f"{_short(value)} is not an integer; allowed: {self.allowed()}", path)
        if not (self._low <= value <= self._high) or (value - self._low) % self.step:
            raise SpaceError(f"{_big(value)} is out of range; allowed: {self.allowed()}", path)
        return value

    def sample(self, rng: np.random.Generator) -> int:
        n = (self._high - self._low) // self.step + 1
        return self._low + self.step * int(rng.integers(n))

    def values(self) -> tuple[int, ...]:
        return tuple(range(self._low, self._high + 1, self.step))

    def n_values(self) -> int:
        return (self._high - self._low) // self.step + 1

    def low(self) -> int:
        return self._low

    def high(self) -> int:
        return self._high

    def allowed(self) -> str:
        tail = f" in steps of {self.step}" if self.step != 1 else ""
        return f"integers {self._low}..{self._high}{tail}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "int", "low": self._low, "high": self._high, "step": self.step}

    def __repr__(self) -> str:
        tail = f", step={self.step}" if self.step != 1 else ""
        return f"IntRange({self._low}, {self._high}{tail})"


class FloatRange(Param):
    """A real number in ``[low, high]``, sampled uniformly or log-uniformly (``log=True``)."""

    kind = "float"

    def __init__(self, low: float, high: float, log: bool = False) -> None:
        for name, v in (("low", low), ("high", high)):
            if not _is_number(v) or not math.isfinite(float(v)):
                raise SpaceError(f"FloatRange {name} must be a finite number, got {v!r}")
        low, high = float(low), float(high)
        if low > high:
            raise SpaceError(f"FloatRange low={low} is greater than high={high}")
        if log and low <= 0:
            raise SpaceError(f"FloatRange with log=True needs low > 0, got low={low}")
        self._low, self._high, self.log = low, high, bool(log)

    @property
    def is_discrete(self) -> bool:
        return False

    def validate(self, value: Any, path: str) -> float:
        value = _to_python(value)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
            raise SpaceError(f"{_big(value)} is out of range; allowed: {self.allowed()}", path)
        if not _is_number(value) or not math.isfinite(float(value)):
            raise SpaceError(f"{_short(value)} is not a finite number; allowed: {self.allowed()}", path)
        value = float(value)
        if not (self._low <= value <= self._high):
            raise SpaceError(f"{_big(value)} is out of range; allowed: {self.allowed()}", path)
        return value

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self._low), math.log(self._high))))
        return float(rng.uniform(self._low, self._high))

    def values(self) -> tuple[Any, ...]:
        raise SpaceError(f"FloatRange({self._low}, {self._high}) is continuous: it has no finite list of values")

    def low(self) -> float:
        return self._low

    def high(self) -> float:
        return self._high

    def allowed(self) -> str:
        return f"numbers {self._low}..{self._high}" + (" (log scale)" if self.log else "")

    def to_json(self) -> dict[str, Any]:
        return {"type": "float", "low": self._low, "high": self._high, "log": self.log}

    def __repr__(self) -> str:
        return f"FloatRange({self._low}, {self._high}{', log=True' if self.log else ''})"


class PerLayer(Param):
    """A block of parameters repeated ``count`` times.

    ``count`` is an int, or the name of a sibling integer parameter (conditional depth):
    ``PerLayer("n_layer", n_head=Choice(2, 4))``. Blocks nest: a ``PerLayer`` may hold its own
    depth parameter and a ``PerLayer`` of blocks that refers to it.
    """

    kind = "per_layer"

    def __init__(self, count: int | str, **params: Param) -> None:
        if isinstance(count, bool) or not isinstance(count, (int, str)):
            raise SpaceError(f"PerLayer count must be an int or a parameter name, got {count!r}")
        if isinstance(count, int) and count < 0:
            raise SpaceError(f"PerLayer count must be >= 0, got {count}")

        self.count = count
        self.params: dict[str, Param] = check_block(params)

    @property
    def is_discrete(self) -> bool:
        return all(p.is_discrete for p in self.params.values())

    def validate(self, value: Any, path: str) -> Any:  # pragma: no cover - handled by the space
        raise NotImplementedError("PerLayer values are validated by their SearchSpace")

    def allowed(self) -> str:
        return f"a list of {self.count} blocks"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "per_layer",
            "count": self.count,
            "params": [{"name": k, **p.to_json()} for k, p in self.params.items()],
        }

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={p!r}" for k, p in self.params.items())
        return f"PerLayer({self.count!r}{', ' if inner else ''}{inner})"


def check_block(params: Mapping[str, Any]) -> dict[str, Param]:
    """Check the parameters of one block (names, types, count references); return them."""
    out: dict[str, Param] = {}
    for name, p in params.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SpaceError(f"parameter name {name!r} must be a Python identifier (no dots or brackets)")
        if not isinstance(p, Param):
            raise SpaceError(
                f"{p!r} is not a parameter; use Choice, IntRange, FloatRange or PerLayer", name
            )
        out[name] = p
        _check_limits(name, p)
    for name, p in out.items():
        if isinstance(p, PerLayer) and isinstance(p.count, str):
            ref = out.get(p.count)
            if ref is None:
                raise SpaceError(
                    f"count {p.count!r} names no parameter of this block; "
                    f"parameters here: {', '.join(out) or '(none)'}",
                    name,
                )
            ok = isinstance(ref, IntRange) or (isinstance(ref, Choice) and ref.is_integer)
            if not ok:
                raise SpaceError(f"count {p.count!r} must name an integer parameter, but it is {ref!r}", name)
            if ref.low() < 0:
                raise SpaceError(f"count {p.count!r} may be negative ({ref!r}); depths must be >= 0", name)
            if ref.high() > MAX_LAYERS:
                raise SpaceError(f"count {p.count!r} may be {ref.high():,}, above the limit of {MAX_LAYERS} layers",
                                 name)
    if max_blocks(out) > MAX_BLOCKS:
        raise SpaceError(f"an architecture may hold {max_blocks(out):,} blocks (nested PerLayer counts "
                         f"multiply), above the limit of {MAX_BLOCKS:,}")
    return out


def _check_limits(name: str, p: Param) -> None:
    """Refuse values beyond the documented limits (MAX_LAYERS, MAX_INT), naming the field."""
    if isinstance(p, PerLayer) and isinstance(p.count, int) and p.count > MAX_LAYERS:
        raise SpaceError(f"PerLayer count {_big(p.count)} is above the limit of {MAX_LAYERS} layers", name)
    if isinstance(p, IntRange):
        for which, v in (("low", p.low()), ("high", p.high())):
            if abs(v) > MAX_INT:
                raise SpaceError(f"IntRange {which}={_big(v)} is beyond the limit of +-2**53 for integers", name)
    if isinstance(p, Choice):
        for v in p.values():
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
                raise SpaceError(f"Choice value {_big(v)} is beyond the limit of +-2**53 for integers", name)


def max_blocks(block: Mapping[str, Param]) -> int:
    """The most repeated blocks one architecture of ``block`` can hold (nested ones included)."""
    total = 0
    for name, p in block.items():
        if isinstance(p, PerLayer):
            total += max_count(block, name) * (1 + max_blocks(p.params))
    return total


def _short(value: Any, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters (a user's value may be a huge list)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _big(value)
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _big(v: int) -> str:
    """An integer as text, or its size when Python would refuse to print it (> 4300 digits)."""
    return show_int(v)


def count_values(block: Mapping[str, Param], name: str) -> tuple[int, ...]:
    """The possible repeat counts of the ``PerLayer`` ``block[name]``."""
    p = block[name]
    assert isinstance(p, PerLayer)
    if isinstance(p.count, int):
        return (p.count,)
    return tuple(block[p.count].values())


def max_count(block: Mapping[str, Param], name: str) -> int:
    p = block[name]
    assert isinstance(p, PerLayer)
    return p.count if isinstance(p.count, int) else int(block[p.count].high())


def param_from_json(d: Mapping[str, Any], where: str = "") -> Param:
    """Inverse of ``Param.to_json``; malformed entries raise ``SpaceError`` naming the field."""
    if not isinstance(d, Mapping):
        raise SpaceError(f"expected a parameter object, got {type(d).__name__}", where)
    kind = d.get("type")
    fields = {"choice": ("values",), "int": ("low", "high"), "float": ("low", "high"), "per_layer": ("count",)}
    if kind not in fields:
        raise SpaceError(f"unknown parameter type {kind!r}; allowed: choice, int, float, per_layer", where)
    for f in fields[kind]:
        if f not in d:
            raise SpaceError(f"missing {f!r} of a {kind} parameter", where)
    try:
        if kind == "choice":
            if not isinstance(d["values"], list):
                raise SpaceError(f"'values' must be a list, got {type(d['values']).__name__}")
            if "default" in d:
                return Choice(*d["values"], default=d["default"])
            return Choice(*d["values"])
        if kind == "int":
            return IntRange(d["low"], d["high"], d.get("step", 1))
        if kind == "float":
            return FloatRange(d["low"], d["high"], d.get("log", False))
        return PerLayer(d["count"], **block_from_json(d.get("params", []), where))
    except SpaceError as exc:
        if exc.path or not where:
            raise
        raise SpaceError(exc.reason, where) from None


def block_from_json(items: Any, where: str = "") -> dict[str, Param]:
    """Parameters of a block from their JSON list, refusing duplicate names."""
    if not isinstance(items, list):
        raise SpaceError(f"expected a list of parameters, got {type(items).__name__}", where)
    out: dict[str, Param] = {}
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            raise SpaceError("every parameter needs a string 'name'", f"{where}.params[{i}]" if where else f"params[{i}]")
        if name in out:
            raise SpaceError(f"duplicate parameter name {name!r}", where)
        out[name] = param_from_json(item, f"{where}.{name}" if where else name)
    return check_block(out)
