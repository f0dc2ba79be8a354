"""Architectures to profile: extremes, a depth x width stratified set, and random draws."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from archlab.spaces import Arch, SearchSpace, SpaceError


def depth_width(space: SearchSpace, archs: list[Arch]) -> tuple[np.ndarray, np.ndarray]:
    """Per arch: depth (present layers, counting fixed per-layer slots) and width (mean of the
    normalised ordered values of the present features, presence masks excluded), both floats."""
    names = space.feature_names()
    E = space.encode_many(archs, normalized=True).astype(np.float64)
    present = [j for j, n in enumerate(names) if n.endswith(".present")]
    other = [j for j, n in enumerate(names) if not n.endswith(".present") and "=" not in n]
    depth = E[:, present].sum(axis=1) if present else np.zeros(len(archs))
    if not present:
        depth = np.asarray([sum(1 for n in names if n.count(".") >= 2) for _ in archs], dtype=np.float64)
    raw = space.encode_many(archs).astype(np.float64)
    mask = (raw[:, other] != 0) if other else np.zeros((len(archs), 0), bool)
    vals = E[:, other]
    with np.errstate(invalid="ignore"):
        width = np.where(mask.sum(axis=1) > 0, (vals * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1), 0.0)
    return depth, width


def sample_profile_archs(space: SearchSpace, n: int, seed: int = 0, stratified_share: float = 0.5,
                         width_bins: int = 4) -> list[Arch]:
    """``n`` distinct architectures: smallest and largest first, then about
    ``stratified_share`` of ``n`` drawn round-robin over (depth, width-quantile) cells of a
    seeded candidate pool, the rest uniform random. Same seed, same list."""
    if n < 1:
        raise SpaceError(f"n must be >= 1, got {n}", "n")
    out: list[Arch] = []
    seen: set[str] = set()

    def add(a: Arch) -> None:
        if a.key not in seen and len(out) < n:
            seen.add(a.key)
            out.append(a)

    for extreme in (space.smallest, space.largest):
        with contextlib.suppress(SpaceError):
            add(extreme())
    rng = np.random.default_rng(seed)
    try:
        size = space.size
    except SpaceError:
        size = None
    pool_n = 8 * n if size is None else min(8 * n, size)
    pool: list[Arch] = []
    tries = 0
    pool_seen: set[str] = set()
    while len(pool) < pool_n and tries < 40 * n + 100:
        a = space.sample(rng)
        tries += 1
        if a.key not in pool_seen:
            pool_seen.add(a.key)
            pool.append(a)
    if pool:
        depth, width = depth_width(space, pool)
        edges = np.unique(np.quantile(width, np.linspace(0, 1, width_bins + 1)[1:-1]))
        cells: dict[tuple[float, int], list[int]] = {}
        for i, (d, w) in enumerate(zip(depth, width)):
            cells.setdefault((float(d), int(np.searchsorted(edges, w, side="right"))), []).append(i)
        order = sorted(cells)
        target = len(out) + round(stratified_share * n)
        pos = 0
        while len(out) < min(target, n) and any(cells[c] for c in order):
            cell = cells[order[pos % len(order)]]
            if cell:
                add(pool[cell.pop(0)])
            pos += 1
        rest = [pool[i] for i in rng.permutation(len(pool))]
        for a in rest:
            add(a)
    while len(out) < n and tries < 100 * n + 1000:
        add(space.sample(rng))
        tries += 1
    return out


def anchor_archs(space: SearchSpace, k: int = 3, seed: int = 0) -> list[Arch]:
    """``k`` fixed architectures re-timed through a run: smallest, largest, then seeded draws."""
    out: list[Arch] = []
    for extreme in (space.smallest, space.largest):
        try:
            a = extreme()
        except SpaceError:
            continue
        if a not in out:
            out.append(a)
    rng = np.random.default_rng(10_000 + seed)
    tries = 0
    while len(out) < k and tries < 1000:
        a = space.sample(rng)
        tries += 1
        if a not in out:
            out.append(a)
    return out[:k]


def reference_arch(space: SearchSpace, seed: int = 0, exclude: Sequence[Arch] = ()) -> Arch:
    """The fixed architecture a profiling run interleaves with every measurement to follow the
    machine's speed: a seeded draw that is none of ``exclude`` (the anchors, whose re-timings
    must stay an independent measure of the noise)."""
    rng = np.random.default_rng(20_000 + seed)
    a = space.sample(rng)
    for _ in range(1000):
        if a not in exclude:
            return a
        a = space.sample(rng)
    return a
