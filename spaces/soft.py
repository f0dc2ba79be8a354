"""Soft architectures: a probability vector per choice of a search space (numpy only).

A ``SoftLayout`` lists every *choice slot* of a space: each scalar parameter at each of its
positions, every slot of a ``PerLayer`` block up to the largest count included (a slot that
a smaller depth drops still has a distribution; it only matters when present). Slot paths
spell positions as the encoding does: ``n_layer``, ``layers.2.ffn``, ``stages.0.blocks.1.kernel``.

A ``SoftArch`` holds one probability vector per slot (non-negative, summing to 1). It gives

- ``argmax()``: the discrete ``Arch`` of the most likely value of every slot (counts first,
  so a slot beyond the chosen depth is dropped);
- ``expected_encoding()``: the expectation of ``space.encode(arch, normalized)`` under the
  product distribution of the slots (what a mixture-of-supernets router reads).

Each feature of the encoding is a product of linear forms of single slots (the value or
one-hot entry of its own slot, times ``P(count > i)`` for each enclosing conditional block),
so the expectation is exact for independent slots. ``SoftLayout.encoding_terms`` exposes
those forms, so the torch side (``archlab.supernets.soft.ops``) computes the same expectation
differentiably.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arch import Arch
from .encoding import _ordered, _scale
from .errors import SpaceError
from .params import Param, PerLayer, max_count
from .space import SearchSpace

# one factor of an encoding feature: (slot index, coefficients over that slot's values)
Term = tuple[int, np.ndarray]


@dataclass(frozen=True)
class Slot:
    """One choice of the space: ``path`` (``layers.2.ffn``), its ``values`` and its parameter."""

    path: str
    values: tuple[Any, ...]
    param: Param

    @property
    def size(self) -> int:
        return len(self.values)


class SoftLayout:
    """The choice slots of a space and the encoding's expected-value recipe."""

    def __init__(self, space: SearchSpace) -> None:
        if not isinstance(space, SearchSpace):
            raise SpaceError(f"soft architecture: expected a SearchSpace, got {type(space).__name__}")
        self.space = space
        self.slots: list[Slot] = []
        self._walk(space.params, "")
        self.index = {s.path: i for i, s in enumerate(self.slots)}
        # presence[j]: factors whose product is the probability that slot j is present
        self.presence: list[list[Term]] = [[] for _ in self.slots]
        self.encoding_terms: dict[bool, list[list[Term]]] = {
            n: self._encoding_terms(space.params, "", [], n) for n in (False, True)
        }
        if len(self.encoding_terms[True]) != space.encoding_size:  # pragma: no cover - layouts walk alike
            raise SpaceError("soft architecture: encoding recipe does not match the space's encoding")

    def _walk(self, block: Mapping[str, Param], prefix: str) -> None:
        for k, p in block.items():
            if isinstance(p, PerLayer):
                for i in range(max_count(block, k)):
                    self._walk(p.params, f"{prefix}{k}.{i}.")
            else:
                if not p.is_discrete:
                    raise SpaceError(f"{p!r} is continuous; soft architectures need discrete choices", prefix + k)
                self.slots.append(Slot(prefix + k, tuple(p.values()), p))

    def _encoding_terms(self, block: Mapping[str, Param], prefix: str, presence: list[Term],
                        normalized: bool) -> list[list[Term]]:
        out: list[list[Term]] = []
        for k, p in block.items():
            if isinstance(p, PerLayer):
                for i in range(max_count(block, k)):
                    factors = list(presence)
                    if isinstance(p.count, str):
                        j = self.index[prefix + p.count]
                        count_vals = np.asarray(self.slots[j].values, dtype=np.float64)
                        present = (j, (count_vals > i).astype(np.float64))
                        factors.append(present)
                        out.append(list(factors))
                    out.extend(self._encoding_terms(p.params, f"{prefix}{k}.{i}.", factors, normalized))
            else:
                j = self.index[prefix + k]
                vals = self.slots[j].values
                self.presence[j] = list(presence)
                if _ordered(p):
                    coef = np.asarray([_scale(p, float(v), normalized) for v in vals], dtype=np.float64)
                    out.append([*presence, (j, coef)])
                else:
                    for c in range(len(vals)):
                        out.append([*presence, (j, np.eye(len(vals))[c])])
        return out

    # construction -----------------------------------------------------------------
    def uniform(self) -> SoftArch:
        """Every value of every slot equally likely."""
        return SoftArch(self, [np.full(s.size, 1.0 / s.size) for s in self.slots])

    def one_hot(self, arch: Mapping[str, Any] | str) -> SoftArch:
        """Probability 1 on ``arch``'s values; slots the arch drops keep their first value."""
        valid = self.space.validate(arch, check_constraints=False)
        probs = [np.eye(s.size)[0] for s in self.slots]
        for path, value in _flatten(valid, ""):
            j = self.index[path]
            slot = self.slots[j]
            probs[j] = np.eye(slot.size)[_position(slot, value)]
        return SoftArch(self, probs)

    def from_vectors(self, vectors: Mapping[str, Any]) -> SoftArch:
        """A ``SoftArch`` from ``{path: probabilities}`` covering every slot."""
        missing = [s.path for s in self.slots if s.path not in vectors]
        if missing:
            raise SpaceError(f"no probabilities for slot {missing[0]!r}; slots: {', '.join(self.index)}")
        unknown = [k for k in vectors if k not in self.index]
        if unknown:
            raise SpaceError(f"unknown slot {unknown[0]!r}; slots: {', '.join(self.index)}")
        return SoftArch(self, [np.asarray(vectors[s.path], dtype=np.float64) for s in self.slots])


def _flatten(value: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in value.items():
        if isinstance(v, (list, tuple)):
            for i, sub in enumerate(v):
                out.extend(_flatten(sub, f"{prefix}{k}.{i}."))
        else:
            out.append((prefix + k, v))
    return out


def _position(slot: Slot, value: Any) -> int:
    for i, v in enumerate(slot.values):
        if (type(v) is type(value) or slot.param.is_ordered) and v == value:
            return i
    raise SpaceError(f"{value!r} is not allowed; allowed: {slot.param.allowed()}", slot.path)


class SoftArch:
    """One probability vector per slot of a ``SoftLayout`` (``probs[path]``)."""

    def __init__(self, layout: SoftLayout, probs: list[np.ndarray]) -> None:
        if len(probs) != len(layout.slots):
            raise SpaceError(f"soft architecture: {len(probs)} vectors for {len(layout.slots)} slots")
        clean = []
        for slot, p in zip(layout.slots, probs):
            p = np.asarray(p, dtype=np.float64).reshape(-1)
            if p.shape[0] != slot.size:
                raise SpaceError(f"{p.shape[0]} probabilities for {slot.size} values ({slot.param.allowed()})", slot.path)
            if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(float(p.sum()) - 1.0) > 1e-6:
                raise SpaceError("probabilities must be finite, >= 0 and sum to 1", slot.path)
            clean.append(p)
        self.layout = layout
        self.vectors = clean

    def __getitem__(self, path: str) -> np.ndarray:
        j = self.layout.index.get(path)
        if j is None:
            raise SpaceError(f"unknown slot {path!r}; slots: {', '.join(self.layout.index)}")
        return self.vectors[j]

    def argmax(self) -> Arch:
        """The discrete architecture of the most likely value of every slot."""
        best = {s.path: s.values[int(np.argmax(p))] for s, p in zip(self.layout.slots, self.vectors)}
        return self.layout.space.validate(_build(self.layout.space.params, best, ""), check_constraints=False)

    def expected_encoding(self, normalized: bool = True) -> np.ndarray:
        """``E[space.encode(arch, normalized)]`` under the product of the slot distributions."""
        terms = self.layout.encoding_terms[bool(normalized)]
        return np.asarray([np.prod([self.vectors[j] @ c for j, c in f]) for f in terms], dtype=np.float32)

    def presence(self) -> np.ndarray:
        """Per slot, the probability that the slot is present (its enclosing depths reach it)."""
        return np.asarray([np.prod([self.vectors[j] @ c for j, c in f]) if f else 1.0
                           for f in self.layout.presence], dtype=np.float64)

    def entropy(self) -> float:
        """Sum over slots of the entropy (nats) of their distributions."""
        return float(sum(-(p[p > 0] * np.log(p[p > 0])).sum() for p in self.vectors))

    def to_dict(self) -> dict[str, list[float]]:
        return {s.path: [float(x) for x in p] for s, p in zip(self.layout.slots, self.vectors)}


def _build(block: Mapping[str, Param], best: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {k: best[prefix + k] for k, p in block.items() if not isinstance(p, PerLayer)}
    for k, p in block.items():
        if isinstance(p, PerLayer):
            n = p.count if isinstance(p.count, int) else int(out[p.count])
            out[k] = [_build(p.params, best, f"{prefix}{k}.{i}.") for i in range(n)]
    return {k: out[k] for k in block}


__all__ = ["Slot", "SoftArch", "SoftLayout", "Term"]
