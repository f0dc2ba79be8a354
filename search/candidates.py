"""Candidate architectures for acquisition-driven samplers: random draws and local moves.

Genomes are fixed-width flat parameter dicts (``space.suggest(..., fixed_width=True)``: every
per-layer slot up to the maximum depth), so a move on a slot beyond the active depth is
harmless and depth moves keep the deeper slots' values. ``Domain`` records, per flat name, the
allowed values (categorical and integer choices) or the float range, by running ``suggest``
once on a recording trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from archlab.spaces import Arch, SearchSpace


class DrawTrial:
    """Duck-typed Optuna trial for ``space.suggest``: replays ``fixed`` values, draws the rest
    uniformly; records each name's domain in ``domains`` (``list`` of values or ``(lo, hi, log)``)."""

    def __init__(self, rng: np.random.Generator, fixed: Mapping[str, Any] | None = None) -> None:
        self.rng = rng
        self.fixed = fixed or {}
        self.params: dict[str, Any] = {}
        self.domains: dict[str, Any] = {}

    def _pick(self, name: str, ok: Any, draw: Any) -> Any:
        v = self.fixed.get(name)
        if v is None or not ok(v):
            v = draw()
        self.params[name] = v
        return v

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.domains[name] = list(choices)
        return self._pick(name, lambda v: v in choices, lambda: choices[int(self.rng.integers(len(choices)))])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        self.domains[name] = list(range(low, high + 1, step))
        n = (high - low) // step
        return self._pick(name, lambda v: low <= v <= high, lambda: int(low + step * self.rng.integers(n + 1)))

    def suggest_float(self, name: str, low: float, high: float, log: bool = False, step: Any = None) -> float:
        self.domains[name] = (float(low), float(high), bool(log))

        def draw() -> float:
            if log:
                return float(np.exp(self.rng.uniform(np.log(low), np.log(high))))
            return float(self.rng.uniform(low, high))

        return self._pick(name, lambda v: low <= v <= high, draw)


class Moves:
    """Random genomes and one- or two-parameter moves of a genome, as ``Arch`` objects."""

    MEMO = 200_000  # genomes -> Arch kept at most (then the memo starts afresh)

    def __init__(self, space: SearchSpace, rng: np.random.Generator) -> None:
        self.space = space
        self.rng = rng
        t = DrawTrial(rng)
        space.suggest(t, fixed_width=True)
        self.domains: dict[str, Any] = t.domains
        self.names = list(t.domains)
        self._memo: dict[tuple[Any, ...], tuple[Arch, str]] = {}

    def genome(self, arch: Arch | None) -> dict[str, Any]:
        """The fixed-width genome of ``arch`` (inactive slots drawn at random), or a random one."""
        known = self.space.to_params(arch) if arch is not None else {}
        return {n: known[n] if n in known else self._draw(n) for n in self.names}

    def _draw(self, name: str) -> Any:
        dom = self.domains[name]
        if isinstance(dom, tuple):
            lo, hi, log = dom
            return float(np.exp(self.rng.uniform(np.log(lo), np.log(hi)))) if log else float(self.rng.uniform(lo, hi))
        return dom[int(self.rng.integers(len(dom)))]

    def arch(self, genome: Mapping[str, Any]) -> Arch:
        """The ``Arch`` of ``genome`` (memoised: building an ``Arch`` costs far more than a lookup)."""
        return self.arch_and_key(genome)[0]

    def arch_and_key(self, genome: Mapping[str, Any]) -> tuple[Arch, str]:
        """``(Arch, Arch.key)`` of ``genome``, memoised."""
        g = tuple(genome[n] for n in self.names)
        hit = self._memo.get(g)
        if hit is None:
            if len(self._memo) >= self.MEMO:
                self._memo.clear()
            a = self.space.suggest(DrawTrial(self.rng, genome))
            hit = self._memo[g] = (a, a.key)
        return hit

    def _other(self, name: str, value: Any) -> Any:
        dom = self.domains[name]
        if isinstance(dom, tuple):
            lo, hi, log = dom
            if log:
                return float(np.exp(np.log(value) + self.rng.normal(0, 0.25 * (np.log(hi) - np.log(lo)))).clip(lo, hi))
            return float(np.clip(value + self.rng.normal(0, 0.25 * (hi - lo)), lo, hi))
        others = [v for v in dom if v != value]
        return others[int(self.rng.integers(len(others)))] if others else value

    def neighbours(self, genome: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every one-parameter move of ``genome`` (finite domains; floats: two draws each)."""
        out: list[dict[str, Any]] = []
        for name in self.names:
            dom = self.domains[name]
            values = [self._other(name, genome[name]) for _ in range(2)] if isinstance(dom, tuple) else \
                [v for v in dom if v != genome[name]]
            out.extend({**genome, name: v} for v in values)
        return out

    def mutate(self, genome: Mapping[str, Any], n_moves: int) -> dict[str, Any]:
        """``genome`` with ``n_moves`` distinct parameters changed."""
        child = dict(genome)
        for name in self.rng.choice(self.names, size=min(n_moves, len(self.names)), replace=False):
            child[str(name)] = self._other(str(name), child[str(name)])
        return child

    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        """Uniform crossover of two genomes."""
        return {k: (a[k] if self.rng.random() < 0.5 else b[k]) for k in a}


class WholeSpace:
    """Every architecture of a small space, enumerated once, with encodings and cached values.

    ``WholeSpace.of(space, limit)`` is ``None`` for a space larger than ``limit`` (or with a
    continuous parameter): the sampler then scores a candidate pool instead.
    """

    def __init__(self, space: SearchSpace, features: Any = None) -> None:
        self.archs = list(space.enumerate(limit=max(space.size, 1)))
        self.keys = [a.key for a in self.archs]
        self.index = {k: i for i, k in enumerate(self.keys)}
        # the model's inputs: ``features(archs)``, or the normalised encoding
        self.X = features(self.archs) if features is not None else space.encode_many(self.archs, normalized=True).astype(float)

    @classmethod
    def of(cls, space: SearchSpace, limit: int, features: Any = None) -> WholeSpace | None:
        """The enumerated space, or ``None`` when it has more than ``limit`` architectures."""
        from archlab.spaces import SpaceError

        try:
            size = space.size
        except SpaceError:  # a continuous parameter: no finite enumeration
            return None
        return cls(space, features) if 0 < size <= limit else None

    def untaken(self, taken: set[str]) -> np.ndarray:
        """Indices of the architectures whose keys are not in ``taken``."""
        mask = np.ones(len(self.keys), dtype=bool)
        for k in taken:
            i = self.index.get(k)
            if i is not None:
                mask[i] = False
        return np.flatnonzero(mask)


def pool_search(moves: Moves, parents: list[Arch], score: Any, taken: set[str], feasible: Any,
                n_random: int, local_rounds: int) -> tuple[list[Arch], np.ndarray]:
    """Candidates around ``parents`` (every one-parameter move, ``n_random`` two-parameter
    moves, ``n_random // 2`` crossovers and ``n_random`` random draws), scored by ``score``
    (list of ``Arch`` -> array), then ``local_rounds`` of moves of the 8 best joining the pool (a
    hill climb on the score). Keys in ``taken`` and architectures ``feasible`` rejects are left
    out. Returns the candidates and their scores (empty when nothing is left)."""
    rng = moves.rng
    genomes = [moves.genome(a) for a in parents]
    pool_g = [g for gen in genomes for g in moves.neighbours(gen)]
    pool_g += [moves.mutate(genomes[int(rng.integers(len(genomes)))], 2) for _ in range(n_random)]
    pool_g += [moves.crossover(genomes[int(rng.integers(len(genomes)))],
                               genomes[int(rng.integers(len(genomes)))]) for _ in range(n_random // 2)]
    pool_g += [moves.genome(None) for _ in range(n_random)]
    pool: dict[str, Arch] = {}
    gmap: dict[str, dict[str, Any]] = {}
    _add(moves, feasible, pool, gmap, pool_g, taken)
    if not pool:
        return [], np.zeros(0)
    cands = list(pool.values())
    acq = score(cands)
    for _ in range(local_rounds):
        top = [cands[i] for i in np.argsort(-acq)[:8]]
        fresh: dict[str, Arch] = {}
        _add(moves, feasible, fresh, gmap, [g for a in top for g in moves.neighbours(gmap[a.key])], taken | set(pool))
        if not fresh:
            break
        new = list(fresh.values())
        pool.update(fresh)
        cands += new
        acq = np.concatenate([acq, score(new)])
    return cands, acq


def _add(moves: Moves, feasible: Any, pool: dict[str, Arch], gmap: dict[str, dict[str, Any]],
         genomes: list[dict[str, Any]], taken: set[str]) -> None:
    """Add the architectures of ``genomes`` not taken, not pooled yet and feasible to ``pool``."""
    new: dict[str, tuple[str, Arch, dict[str, Any]]] = {}
    for g in genomes:
        a, key = moves.arch_and_key(g)
        if key not in taken and key not in pool and key not in new:
            new[key] = (key, a, g)
    rows = list(new.values())
    ok = feasible([a for _, a, _ in rows]) if rows else np.zeros(0, dtype=bool)
    for (key, a, g), good in zip(rows, ok):
        if good:
            pool[key] = a
            gmap.setdefault(key, g)
