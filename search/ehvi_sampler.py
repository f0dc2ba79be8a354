"""``EHVISampler``: Bayesian multi-objective search for expensive objectives (``sampler="ehvi"``).

Each trial proposes one architecture not evaluated (nor running) in the study yet:

1. the first ``n_startup`` are random draws;
2. then one Gaussian process per objective (and per constraint) is conditioned on every
   distinct evaluated architecture (``space.encode(normalized=True)``; see
   ``archlab.search.surrogate.GPModel``; beyond ``max_condition`` of them, on the best-ranked
   half and a random rest, which bounds the cost per trial);
3. a candidate pool is built around the current front (LINAS-style local search): every
   one-parameter move and some two-parameter moves and crossovers of the ``n_parents``
   best-ranked feasible architectures, plus ``n_random`` random draws;
4. each candidate is scored by the expected hypervolume improvement of its predicted
   objectives over the feasible front (losses scaled to the observed range, reference point
   10 % beyond the worst observed value), times its predicted probability of meeting every
   constraint (``trial.set_constraint`` values, feasible when <= 0); architectures still
   running count as already on the front at their predicted values;
5. ``local_rounds`` times, the moves of the best-scored candidates join the pool (a hill
   climb on the acquisition); the best candidate overall is proposed.

The sampler's state is the study itself: a resumed study, another worker, or a new process
rebuilds the model from the stored trials, so nothing is evaluated twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from scipy.stats import norm

from archlab.spaces import Arch, SearchSpace

from .candidates import Moves
from .pareto import non_dominated_mask, non_dominated_rank
from .plan_sampler import PlanSampler
from .surrogate import GPModel, Warp, expected_hvi


class Planner:
    """The proposal step on plain arrays (no Optuna): see the module docstring."""

    def __init__(self, space: SearchSpace, *, seed: int | None = None, n_startup: int = 10,
                 n_parents: int = 12, n_random: int = 200, local_rounds: int = 2, n_samples: int = 32,
                 refit_every: int = 8, max_fit: int = 300,
                 warp: bool = True, ref_margin: float = 0.5, max_condition: int = 400) -> None:
        self.space = space
        self.seed = 0 if seed is None else int(seed)
        self.rng = np.random.default_rng(seed)
        self.moves = Moves(space, self.rng)
        self.n_startup, self.n_parents, self.n_random = int(n_startup), int(n_parents), int(n_random)
        self.local_rounds, self.n_samples = int(local_rounds), int(n_samples)
        self.model = GPModel(seed=self.seed, refit_every=refit_every, max_fit=max_fit)
        self.cons_model = GPModel(seed=self.seed + 1, refit_every=refit_every, max_fit=max_fit)
        self.warp, self.ref_margin, self.max_condition = bool(warp), float(ref_margin), int(max_condition)
        self._enc: dict[str, np.ndarray] = {}

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        new = [a for a in archs if a.key not in self._enc]
        if new:
            for a, x in zip(new, self.space.encode_many(new, normalized=True)):
                self._enc[a.key] = x
        return np.array([self._enc[a.key] for a in archs], dtype=float).reshape(len(archs), -1)

    def random_arch(self, taken: set[str]) -> Arch:
        a = None
        for _ in range(500):
            a = self.moves.arch(self.moves.genome(None))
            if a.key not in taken and self.space.is_feasible(a):
                return a
        return a  # type: ignore[return-value]  # a nearly exhausted space: the runner answers a repeat

    def propose(self, archs: Sequence[Arch], Y: np.ndarray, C: np.ndarray | None,
                pending: Sequence[Arch] = (), taken: set[str] | None = None) -> Arch:
        """Next architecture given evaluated ``archs`` with losses ``Y`` (n, m; smaller is better)
        and constraint values ``C`` (n, k; feasible when <= 0, or ``None``)."""
        taken = set(taken or ()) | {a.key for a in archs} | {a.key for a in pending}
        if len(archs) < self.n_startup:
            return self.random_arch(taken)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # small matrices: BLAS threads only contend on a shared machine
            return self._propose(archs, Y, C, pending, taken)

    def _propose(self, archs: Sequence[Arch], Y: np.ndarray, C: np.ndarray | None, pending: Sequence[Arch],
                 taken: set[str]) -> Arch:
        rows = self._conditioning_rows(Y, C)
        X = self.encode([archs[i] for i in rows])
        warps = [Warp(Y[rows, j]) for j in range(Y.shape[1])] if self.warp else []
        self.model.fit(X, np.column_stack([w.z for w in warps]) if warps else Y[rows], seen=len(Y))
        has_c = C is not None and C.size > 0
        if has_c and C is not None:
            self.cons_model.fit(X, C[rows], seen=len(Y))
        feas = np.all(C <= 0, axis=1) if has_c and C is not None else np.ones(len(archs), dtype=bool)
        lo, hi = Y.min(axis=0), Y.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        ref = np.full(Y.shape[1], 1.0 + self.ref_margin)

        def to_loss(Z: np.ndarray) -> np.ndarray:
            if warps:
                Z = np.stack([w.inverse(Z[..., j]) for j, w in enumerate(warps)], axis=-1)
            return (Z - lo) / span

        front = (Y[feas] - lo) / span
        if len(pending):
            front = np.vstack([front, to_loss(self.model.predict(self.encode(pending))[0])])
        front = front[non_dominated_mask(front)] if len(front) else front

        def score(cands: list[Arch]) -> np.ndarray:
            Xc = self.encode(cands)
            mean, std = self.model.predict(Xc)
            pof = np.ones(len(cands))
            if has_c:
                cm, cs = self.cons_model.predict(Xc)
                pof = np.prod(norm.cdf(-cm / cs), axis=1)
            if not feas.any():
                return pof
            ehvi = expected_hvi(front, mean, std, ref, self.n_samples, seed=self.seed + len(archs), inverse=to_loss)
            return ehvi * pof + 1e-12 * pof * std.sum(axis=1)  # ties: the more uncertain

        rank = non_dominated_rank(np.where(feas[:, None], Y, Y + 1e6))
        parents = [archs[i] for i in np.argsort(rank, kind="stable")[: self.n_parents]]
        genomes = [self.moves.genome(a) for a in parents]
        pool_g = [g for gen in genomes for g in self.moves.neighbours(gen)]
        pool_g += [self.moves.mutate(genomes[int(self.rng.integers(len(genomes)))], 2) for _ in range(self.n_random)]
        pool_g += [self.moves.crossover(genomes[int(self.rng.integers(len(genomes)))],
                                        genomes[int(self.rng.integers(len(genomes)))]) for _ in range(self.n_random // 2)]
        pool_g += [self.moves.genome(None) for _ in range(self.n_random)]
        pool: dict[str, Arch] = {}
        gmap: dict[str, dict[str, Any]] = {}
        self._add(pool, gmap, pool_g, taken)
        if not pool:
            return self.random_arch(taken)
        cands = list(pool.values())
        acq = score(cands)
        for _ in range(self.local_rounds):
            top = [cands[i] for i in np.argsort(-acq)[:8]]
            fresh: dict[str, Arch] = {}
            self._add(fresh, gmap, [g for a in top for g in self.moves.neighbours(gmap[a.key])], taken | set(pool))
            if not fresh:
                break
            new = list(fresh.values())
            pool.update(fresh)
            cands += new
            acq = np.concatenate([acq, score(new)])
        return cands[int(np.argmax(acq))]

    def _conditioning_rows(self, Y: np.ndarray, C: np.ndarray | None) -> np.ndarray:
        """Every row, or beyond ``max_condition``: the best-ranked half and a seeded random rest
        (the GP's cost grows with the square of its rows; the front's region matters most)."""
        n = len(Y)
        if n <= self.max_condition:
            return np.arange(n)
        bad = np.any(C > 0, axis=1) if C is not None and C.size else np.zeros(n, dtype=bool)
        order = np.argsort(non_dominated_rank(np.where(bad[:, None], Y + 1e6, Y)), kind="stable")
        best = order[: self.max_condition // 2]
        rest = np.setdiff1d(np.arange(n), best)
        pick = np.random.default_rng(self.seed + n).choice(rest, self.max_condition - len(best), replace=False)
        return np.sort(np.concatenate([best, pick]))

    def _add(self, pool: dict[str, Arch], gmap: dict[str, dict[str, Any]], genomes: list[dict[str, Any]],
             taken: set[str]) -> None:
        for g in genomes:
            a, key = self.moves.arch_and_key(g)
            if key in taken or key in pool or (self.space.constraints and not self.space.is_feasible(a)):
                continue
            pool[key] = a
            gmap.setdefault(key, g)


class EHVISampler(PlanSampler):
    """Optuna sampler around ``Planner`` (see module docstring); options as ``Planner``'s."""

    def __init__(self, space: SearchSpace, *, seed: int | None = None, **options: Any) -> None:
        super().__init__(space, seed)
        self.planner = Planner(space, seed=seed, **options)
        self._seen: dict[int, tuple[Arch, list[float], list[float]] | None] = {}

    def plan(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Arch:
        archs, Y, C, pending, taken = self._read(study, trial.number)
        return self.planner.propose(archs, Y, C, pending, taken)

    def reseed_rng(self) -> None:
        self.planner.rng = self.planner.moves.rng = np.random.default_rng()
        super().reseed_rng()

    def _read(self, study: Any, current: int) -> tuple[list[Arch], np.ndarray, np.ndarray | None, list[Arch], set[str]]:
        """Distinct completed architectures (first evaluation of each) with signed losses and
        constraint values, running architectures, and every key seen in the study."""
        S = optuna.trial.TrialState
        signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        archs, rows, cons, pending = [], [], [], []
        taken: set[str] = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == current:
                continue
            if t.state == S.COMPLETE and t.number not in self._seen:
                self._seen[t.number] = self._parse(t)
            entry = self._seen.get(t.number) if t.state == S.COMPLETE else None
            if entry is not None:
                if entry[0].key not in taken:
                    archs.append(entry[0])
                    rows.append(np.asarray(entry[1]) * signs)
                    cons.append(entry[2])
                taken.add(entry[0].key)
            elif t.state in (S.RUNNING, S.WAITING) and t.params:
                try:
                    a = self.space.from_params(t.params, strict=False)
                except Exception:  # a trial still being suggested has part of its parameters
                    continue
                pending.append(a)
                taken.add(a.key)
        Y = np.array(rows, dtype=float).reshape(-1, len(signs))
        width = min((len(c) for c in cons), default=0)
        C = np.array([c[:width] for c in cons], dtype=float).reshape(len(cons), width) if width else None
        return archs, Y, C, pending, taken

    def _parse(self, t: Any) -> tuple[Arch, list[float], list[float]] | None:
        if t.values is None or any(not np.isfinite(v) for v in t.values):
            return None
        key = t.user_attrs.get("arch")
        try:
            a = Arch.from_json(key) if key else self.space.from_params(t.params, strict=False)
        except Exception:  # parameters of another shape: not this space's trial
            return None
        return a, list(t.values), [float(v) for v in t.constraints.values()] if t.constraints else []
