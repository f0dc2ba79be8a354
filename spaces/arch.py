"""``Arch``: one architecture of a search space, immutable and comparable by value."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import SpaceError


def _freeze(value: Any) -> Any:
    if isinstance(value, Arch):
        return value
    if isinstance(value, Mapping):
        return Arch(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Arch):
        return {k: _thaw(v) for k, v in value._data.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class Arch(Mapping[str, Any]):
    """An architecture: a frozen nested mapping of parameter values.

    Per-layer blocks are tuples of ``Arch``, so ``arch["stages"][2]["blocks"][1]["kernel"]``
    works, as does attribute access (``arch.n_layer``). Two archs are equal when their values
    are; ``arch.key`` is a canonical JSON string (sorted keys, no spaces), identical across
    processes and Python runs, and ``hash(arch)`` follows it.
    """

    __slots__ = ("_data", "_key")

    def __init__(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        merged = dict(data or {}, **kwargs)
        for k in merged:
            if not isinstance(k, str):
                raise SpaceError(f"architecture keys must be strings, got {k!r}")
        object.__setattr__(self, "_data", {k: _freeze(v) for k, v in merged.items()})
        object.__setattr__(self, "_key", None)

    # Mapping protocol -------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Arch is immutable; use arch.replace(...) for a changed copy")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Arch, (self.to_dict(),))

    # identity ---------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Canonical JSON: sorted keys, compact separators. Stable across runs."""
        k = self._key
        if k is None:
            k = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
            object.__setattr__(self, "_key", k)
        return k

    @property
    def digest(self) -> str:
        """A short SHA-256 of ``key`` (12 hex digits), handy for file names."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arch):
            return self.key == other.key
        if isinstance(other, Mapping):
            return self.key == Arch(other).key
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    # conversions ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain nested ``dict``/``list`` copy."""
        return _thaw(self)

    def to_json(self, indent: int | None = None) -> str:
        """JSON text; with ``indent=None`` it equals ``key``."""
        if indent is None:
            return self.key
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        """Parse JSON text into an ``Arch`` (check it with ``space.validate``)."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise SpaceError("architecture is not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
            raise SpaceError(f"architecture is not valid JSON: {' '.join(str(exc).split())[:160]}") from None
        if not isinstance(data, dict):
            raise SpaceError(f"architecture JSON must be an object, got {type(data).__name__}")
        return cls(data)

    def replace(self, **changes: Any) -> Arch:
        """A copy with some top-level values changed (validate it with the space)."""
        return Arch({**self._data, **changes})

    def __repr__(self) -> str:
        return f"Arch({self.key})"
