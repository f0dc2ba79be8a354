"""Fixed-width vector encoding of architectures (for predictors, routers and samplers).

Layout, in the space's parameter order:
- an ordered number (``Choice`` of numbers, ``IntRange``, ``FloatRange``): one entry;
- a categorical ``Choice``: one entry per category (one-hot), named ``name=value``;
- a ``PerLayer``: its slots ``0 .. max depth - 1``; a conditional-depth block starts each
  slot with a presence mask ``name.i.present``; absent slots are all zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import SpaceError
from .params import Choice, FloatRange, Param, PerLayer, max_count


def _ordered(p: Param) -> bool:
    return not (isinstance(p, Choice) and not p.is_ordered)


def _bounds(p: Param) -> tuple[float, float]:
    return float(p.low()), float(p.high())


class Layout:
    """The compiled feature layout of one space: names and per-feature raw ranges."""

    def __init__(self, params: Mapping[str, Param]) -> None:
        self.params = params
        names: list[str] = []
        lows: list[float] = []
        highs: list[float] = []

        def walk(block: Mapping[str, Param], prefix: str) -> None:
            for k, p in block.items():
                if isinstance(p, PerLayer):
                    for i in range(max_count(block, k)):
                        if isinstance(p.count, str):
                            names.append(f"{prefix}{k}.{i}.present")
                            lows.append(0.0)
                            highs.append(1.0)
                        walk(p.params, f"{prefix}{k}.{i}.")
                elif _ordered(p):
                    names.append(prefix + k)
                    lo, hi = _bounds(p)
                    lows.append(lo)
                    highs.append(hi)
                else:
                    for v in p.values():
                        names.append(f"{prefix}{k}={v}")
                        lows.append(0.0)
                        highs.append(1.0)

        walk(params, "")
        self.names = tuple(names)
        self.low = np.asarray(lows, dtype=np.float64)
        self.high = np.asarray(highs, dtype=np.float64)
        self.size = len(names)

    # encode -----------------------------------------------------------------------
    def encode(self, arch: Mapping[str, Any], normalized: bool) -> np.ndarray:
        out: list[float] = []
        try:
            self._encode_block(self.params, arch, out, normalized)
        except (KeyError, TypeError, IndexError) as exc:
            raise SpaceError(f"cannot encode an architecture of another shape ({exc!r}); validate it first") from None
        return np.asarray(out, dtype=np.float32)

    def _encode_block(self, block: Mapping[str, Param], value: Any, out: list[float], normalized: bool) -> None:
        for k, p in block.items():
            v = None if value is None else value[k]
            if isinstance(p, PerLayer):
                seq = v if v is not None else ()
                for i in range(max_count(block, k)):
                    present = i < len(seq)
                    if isinstance(p.count, str):
                        out.append(1.0 if present else 0.0)
                    self._encode_block(p.params, seq[i] if present else None, out, normalized)
            elif _ordered(p):
                out.append(0.0 if v is None else _scale(p, float(v), normalized))
            else:
                vals = p.values()
                out.extend(1.0 if (v is not None and type(c) is type(v) and c == v) else 0.0 for c in vals)

    # decode -----------------------------------------------------------------------
    def decode(self, vector: Any, normalized: bool) -> dict[str, Any]:
        vec = np.asarray(vector, dtype=np.float64).reshape(-1)
        if vec.shape[0] != self.size:
            raise SpaceError(f"vector has {vec.shape[0]} entries; this space encodes to {self.size}")
        pos = [0]

        def take(n: int) -> np.ndarray:
            chunk = vec[pos[0] : pos[0] + n]
            pos[0] += n
            return chunk

        def block_of(block: Mapping[str, Param]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            slots: dict[str, list[dict[str, Any]]] = {}
            for k, p in block.items():
                if isinstance(p, PerLayer):
                    slots[k] = []
                    for _ in range(max_count(block, k)):
                        if isinstance(p.count, str):
                            take(1)
                        slots[k].append(block_of(p.params))
                elif _ordered(p):
                    out[k] = _snap(p, _unscale(p, float(take(1)[0]), normalized))
                else:
                    vals = p.values()
                    out[k] = vals[int(np.argmax(take(len(vals))))]
            for k, p in block.items():
                if isinstance(p, PerLayer):
                    n = p.count if isinstance(p.count, int) else int(out[p.count])
                    out[k] = slots[k][:n]
            return {k: out[k] for k in block}

        return block_of(self.params)


def _scale(p: Param, v: float, normalized: bool) -> float:
    if not normalized:
        return v
    lo, hi = _bounds(p)
    if isinstance(p, FloatRange) and p.log:
        lo, hi, v = math.log(lo), math.log(hi), math.log(v)
    return 0.5 if hi == lo else (v - lo) / (hi - lo)


def _unscale(p: Param, v: float, normalized: bool) -> float:
    if not normalized:
        return v
    lo, hi = _bounds(p)
    if isinstance(p, FloatRange) and p.log:
        return math.exp(math.log(lo) + v * (math.log(hi) - math.log(lo)))
    return lo + v * (hi - lo)


def _snap(p: Param, v: float) -> Any:
    """The allowed value nearest to ``v``."""
    if isinstance(p, FloatRange):
        return min(max(v, p.low()), p.high())
    vals = p.values()
    return vals[int(np.argmin([abs(float(c) - v) for c in vals]))]


def summary(params: Mapping[str, Param], arch: Mapping[str, Any]) -> str:
    """One line: scalars as ``k=v``; a flat per-layer block as lists per parameter."""

    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    def block(b: Mapping[str, Param], value: Mapping[str, Any]) -> list[str]:
        parts: list[str] = []
        several = sum(isinstance(p, PerLayer) for p in b.values()) > 1
        for k, p in b.items():
            v = value[k]
            if isinstance(p, PerLayer):
                if all(not isinstance(q, PerLayer) for q in p.params.values()):
                    for name in p.params:
                        label = f"{k}.{name}" if several else name
                        parts.append(f"{label}=[{','.join(fmt(x[name]) for x in v)}]")
                else:
                    parts.append(f"{k}=[" + " | ".join(" ".join(block(p.params, x)) for x in v) + "]")
            else:
                parts.append(f"{k}={fmt(v)}")
        return parts

    return " ".join(block(params, arch))


def feature_groups(names: Sequence[str]) -> list[str]:
    """The parameter each encoding feature belongs to (``edges.0.op=none`` -> ``edges.0.op``)."""
    return [n.split("=", 1)[0] for n in names]


def pairwise_features(X: np.ndarray, names: Sequence[str], scale: float | None = None) -> np.ndarray:
    """``X`` (n, d) with the products of every pair of features of *different* parameters
    appended (for one-hot categories: one indicator per pair of choices, i.e. the interactions
    a BANANAS-style path or adjacency encoding carries for cell spaces).

    The products are scaled so that their squared norm matches the base features' when every
    parameter is set (``scale``: override the factor). ``names``: ``space.feature_names()``.
    """
    X = np.asarray(X, dtype=float)
    groups = feature_groups(names)
    order = list(dict.fromkeys(groups))
    cols = [np.flatnonzero(np.asarray(groups) == g) for g in order]
    blocks = [(X[:, a][:, :, None] * X[:, b][:, None, :]).reshape(len(X), -1)
              for i, a in enumerate(cols) for b in cols[i + 1:]]
    if not blocks:
        return X
    P = np.hstack(blocks)
    k = len(order)
    factor = np.sqrt(k / (k * (k - 1) / 2)) if scale is None else float(scale)
    return np.hstack([X, P * factor])


def pairwise_width(names: Sequence[str]) -> int:
    """Width of ``pairwise_features`` for a layout with these feature ``names``."""
    sizes = list({g: sum(1 for h in feature_groups(names) if h == g) for g in feature_groups(names)}.values())
    return len(names) + (sum(sizes) ** 2 - sum(s * s for s in sizes)) // 2
