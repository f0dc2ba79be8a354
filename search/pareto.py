"""Exact non-dominated sorting and hypervolume on plain arrays (numpy only).

Every function here works on a loss matrix ``Y`` of shape ``(n, m)`` where **smaller is better
in every column** (negate maximised objectives first). Point ``a`` dominates ``b`` when
``a <= b`` everywhere and ``a < b`` somewhere; equal points do not dominate each other.

Hypervolume is the Lebesgue measure of the region dominated by the points and bounded above by
the reference point ``r``: ``vol{x : exists y in Y, y <= x < r}``. A point adds volume only
where it is strictly better than ``r`` in every objective.

- 1 objective: ``r - min(y)``.
- 2 objectives: exact sweep, ``O(n log n)``.
- 3 objectives: exact slicing along the third axis with a 2-D sweep per slab, ``O(n^2 log n)``.
- 4 or more: exact recursive slicing (HSO), ``O(n^(m-1))``: fine for fronts of a few hundred
  points at m = 4, slow beyond; use ``hypervolume_mc`` (a seeded Monte-Carlo estimate with a
  standard error) when exactness is not worth the time.
"""

from __future__ import annotations

import numpy as np


def _as_matrix(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2:
        raise ValueError(f"expected an (n, m) loss matrix, got shape {Y.shape}")
    return Y


def non_dominated_mask(Y: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``Y`` (exact; duplicates all kept).

    Rows are visited in lexicographic order; a row can only be dominated by a row before it,
    and (by transitivity) by one already on the front, so each row is checked against the
    current front only: ``O(n log n + n * front * m)``. Rows with NaN are never on the front.
    """
    Y = _as_matrix(Y)
    n, m = Y.shape
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    ok = ~np.isnan(Y).any(axis=1)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return mask
    Z = Y[idx]
    order = np.lexsort(Z.T[::-1])
    front = np.empty((len(idx), m))
    k = 0
    if m == 2:
        # sorted by (f1, f2): dominated iff an earlier front point has f2 <= this f2 and is not equal
        best = np.inf
        last = None
        for i in order:
            y = Z[i]
            if y[1] < best or (last is not None and y[0] == last[0] and y[1] == last[1]):
                mask[idx[i]] = True
                best = min(best, y[1])
                last = y
        return mask
    for i in order:
        y = Z[i]
        if k:
            F = front[:k]
            if np.any(np.all(y >= F, axis=1) & np.any(y > F, axis=1)):
                continue
        front[k] = y
        k += 1
        mask[idx[i]] = True
    return mask


def non_dominated_rank(Y: np.ndarray) -> np.ndarray:
    """Front number of every row (0 = non-dominated, 1 = next front, ...); NaN rows get -1."""
    Y = _as_matrix(Y)
    rank = np.full(len(Y), -1, dtype=int)
    remaining = np.flatnonzero(~np.isnan(Y).any(axis=1))
    r = 0
    while remaining.size:
        m = non_dominated_mask(Y[remaining])
        rank[remaining[m]] = r
        remaining = remaining[~m]
        r += 1
    return rank


def _hv2(P: np.ndarray, r: np.ndarray) -> float:
    P = P[np.lexsort((P[:, 1], P[:, 0]))]
    total = 0.0
    best = r[1]
    for i in range(len(P)):
        y = P[i, 1]
        if y < best:
            total += (r[0] - P[i, 0]) * (best - y)
            best = y
    return float(total)


def _hv3(P: np.ndarray, r: np.ndarray) -> float:
    P = P[np.argsort(P[:, 2], kind="stable")]
    total = 0.0
    for k in range(len(P)):
        top = P[k + 1, 2] if k + 1 < len(P) else r[2]
        height = top - P[k, 2]
        if height > 0:
            total += _hv2(P[: k + 1, :2], r[:2]) * height
    return float(total)


def _hv(P: np.ndarray, r: np.ndarray) -> float:
    m = P.shape[1]
    if len(P) == 0:
        return 0.0
    if m == 1:
        return float(r[0] - P[:, 0].min())
    if m == 2:
        return _hv2(P, r)
    if m == 3:
        return _hv3(P, r)
    P = P[np.argsort(P[:, -1], kind="stable")]
    total = 0.0
    for k in range(len(P)):
        top = P[k + 1, -1] if k + 1 < len(P) else r[-1]
        height = top - P[k, -1]
        if height > 0:
            sub = P[: k + 1, :-1]
            sub = sub[non_dominated_mask(sub)]
            total += _hv(sub, r[:-1]) * height
    return float(total)


def hypervolume_of(Y: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume of loss matrix ``Y`` w.r.t. ``reference`` (see module docstring)."""
    Y = _as_matrix(Y)
    r = np.asarray(reference, dtype=float).reshape(-1)
    if Y.shape[0] == 0:
        return 0.0
    if r.shape[0] != Y.shape[1]:
        raise ValueError(f"reference has {r.shape[0]} values for {Y.shape[1]} objectives")
    Y = Y[~np.isnan(Y).any(axis=1)]
    Y = Y[np.all(r > Y, axis=1)]
    if len(Y) == 0:
        return 0.0
    Y = np.unique(Y, axis=0)
    Y = Y[non_dominated_mask(Y)]
    return _hv(Y, r)


def hypervolume_mc(
    Y: np.ndarray, reference: np.ndarray, n_samples: int = 200_000, seed: int = 0
) -> tuple[float, float]:
    """Monte-Carlo hypervolume estimate and its standard error (for many objectives/points).

    Samples uniformly in the box between the per-objective minimum and ``reference``.
    """
    Y = _as_matrix(Y)
    r = np.asarray(reference, dtype=float).reshape(-1)
    Y = Y[~np.isnan(Y).any(axis=1)]
    Y = Y[np.all(r > Y, axis=1)]
    if len(Y) == 0:
        return 0.0, 0.0
    Y = Y[non_dominated_mask(Y)]
    lo = Y.min(axis=0)
    box = float(np.prod(r - lo))
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    while done < n_samples:
        b = min(20_000, n_samples - done)
        X = lo + rng.random((b, len(r))) * (r - lo)
        dom = np.zeros(b, dtype=bool)
        for y in Y:
            dom |= np.all(y <= X, axis=1)
        hits += int(dom.sum())
        done += b
    p = hits / done
    return box * p, box * float(np.sqrt(p * (1 - p) / done))
