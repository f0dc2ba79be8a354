"""``PredictorSampler``: predictor-in-the-loop multi-objective search (in the spirit of LINAS).

Loop: evaluate ``n_startup`` random architectures; then, in rounds, fit one regressor per
objective on the evaluated architectures (``space.encode(..., normalized=True)``), run an
inner NSGA-II-style evolution on the predictions (``generations`` x ``population``), and queue
the ``batch_size`` unevaluated candidates that add the most *predicted* hypervolume to the real
feasible front (greedy; predicted rank and crowding break ties). Architectures other workers
are running count in that front at their predicted values, so a batch does not chase the gain
a running trial will bring. Queued architectures are proposed one per trial; an architecture
already evaluated or running is never proposed again.

Genomes are fixed-width flat parameter dicts (every per-layer slot up to the maximum depth),
so crossover and mutation work across depths; ``space.suggest`` on a replaying trial turns a
genome into a valid ``Arch``. Regressor: ``ExtraTreesRegressor`` (``model="trees"``) or the
project's ``AccuracyPredictor`` (``model="accuracy_predictor"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from archlab.spaces import Arch, SearchSpace

from .candidates import DrawTrial as _DrawTrial
from .pareto import hypervolume_of, non_dominated_mask, non_dominated_rank
from .plan_sampler import PLANNED, PlanSampler


def crowding(Y: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the rows of ``Y`` (inf at the extremes)."""
    n, m = Y.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(Y[:, j], kind="stable")
        span = Y[order[-1], j] - Y[order[0], j]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (Y[order[2:], j] - Y[order[:-2], j]) / span
    return d


class PredictorSampler(PlanSampler):
    """Optuna sampler proposing architectures chosen on fitted predictors (see module doc)."""

    def __init__(self, space: SearchSpace, *, seed: int | None = None, n_startup: int = 20,
                 batch_size: int = 8, population: int = 64, generations: int = 15,
                 mutation_prob: float | None = None, model: str = "trees", explore: float = 0.1) -> None:
        if model not in ("trees", "accuracy_predictor"):
            from .errors import SearchError

            raise SearchError(f"predictor sampler: unknown model {model!r}; allowed: trees, accuracy_predictor")
        super().__init__(space, seed)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.n_startup = int(n_startup)
        self.batch_size = int(batch_size)
        self.population = int(population)
        self.generations = int(generations)
        self.names = space.param_names()
        self.mutation_prob = mutation_prob if mutation_prob is not None else 2.0 / max(1, len(self.names))
        self.model = model
        self.explore = float(explore)
        self._queue: list[Arch] = []
        self._round = 0

    def plan(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Arch:
        return self._next(study)

    def reseed_rng(self) -> None:
        self.rng = np.random.default_rng()
        self._fallback.reseed_rng()

    # planning ----------------------------------------------------------------------------
    def _evaluated(self, study: Any) -> tuple[list[Arch], np.ndarray, np.ndarray, set[str], list[Arch]]:
        """Distinct completed architectures, their losses and feasibility, every key the study
        holds (running ones too), and the running architectures not completed yet."""
        signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        archs, rows, feas = [], [], []
        keys: set[str] = set()
        done: set[str] = set()
        running: dict[str, None] = {}
        for t in study.get_trials(deepcopy=False):
            # running trials: the key another worker planned (PLANNED), else their parameters
            key = t.user_attrs.get("arch") or t.user_attrs.get(PLANNED) or self._key_of_params(t.params)
            if key:
                keys.add(key)
                if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
                    running[key] = None
            if not key or t.state != optuna.trial.TrialState.COMPLETE or key in done:
                continue
            done.add(key)
            archs.append(Arch.from_json(key))
            rows.append(np.asarray(t.values, dtype=float) * signs)
            feas.append(all(v <= 0 for v in t.constraints.values()))
        Y = np.array(rows).reshape(-1, len(signs))
        pending = [Arch.from_json(k) for k in running if k not in done]
        return archs, Y, np.array(feas, dtype=bool), keys, pending

    def _key_of_params(self, params: Mapping[str, Any]) -> str | None:
        try:
            return self.space.from_params(params, strict=False).key if params else None
        except Exception:  # a trial still being suggested has part of its parameters
            return None

    def _random_arch(self, avoid: set[str]) -> Arch:
        for _ in range(200):
            a = self.space.suggest(_DrawTrial(self.rng))
            if a.key not in avoid and self.space.is_feasible(a):
                return a
        return a

    def _next(self, study: Any) -> Arch:
        archs, Y, feas, keys, pending = self._evaluated(study)
        while self._queue:
            a = self._queue.pop(0)
            if a.key not in keys:
                return a
        if len(archs) < self.n_startup:
            return self._random_arch(keys)
        self._queue = self._plan(archs, Y, feas, keys, pending)
        if not self._queue:
            return self._random_arch(keys)
        return self._queue.pop(0)

    def _genome(self, arch: Arch | None) -> dict[str, Any]:
        t = _DrawTrial(self.rng, self.space.to_params(arch) if arch is not None else None)
        self.space.suggest(t, fixed_width=True)
        return t.params

    def _arch(self, genome: Mapping[str, Any]) -> Arch:
        return self.space.suggest(_DrawTrial(self.rng, genome))

    def _fit(self, archs: list[Arch], Y: np.ndarray) -> Any:
        X = self.space.encode_many(archs, normalized=True)
        models = []
        for j in range(Y.shape[1]):
            if self.model == "accuracy_predictor":
                from archlab.predictors import AccuracyPredictor

                models.append(AccuracyPredictor(self.space, seed=(self.seed or 0) + j).fit(archs, Y[:, j]))
            else:
                from sklearn.ensemble import ExtraTreesRegressor

                m = ExtraTreesRegressor(n_estimators=48, random_state=(self.seed or 0) * 31 + self._round + j, n_jobs=1)
                models.append(m.fit(X, Y[:, j]))

        def predict(cands: list[Arch]) -> np.ndarray:
            if self.model == "accuracy_predictor":
                return np.stack([np.asarray(m.predict(cands), dtype=float) for m in models], axis=1)
            Xc = self.space.encode_many(cands, normalized=True)
            return np.stack([m.predict(Xc) for m in models], axis=1)

        return predict

    def _plan(self, archs: list[Arch], Y: np.ndarray, feas: np.ndarray, keys: set[str],
              pending: Sequence[Arch] = ()) -> list[Arch]:
        """The next batch: unevaluated candidates of an inner evolution on the predictions, chosen
        by predicted hypervolume gain over the feasible front and the running architectures'
        predictions (another worker's trial is counted as if done, so the batch does not chase
        the same gain)."""
        self._round += 1
        predict = self._fit(archs, Y)
        seen: dict[str, Arch] = {}
        pred: dict[str, np.ndarray] = {}

        def score(pop: list[Arch]) -> np.ndarray:
            new = [a for a in pop if a.key not in pred]
            if new:
                for a, p in zip(new, predict(new)):
                    pred[a.key] = p
            return np.array([pred[a.key] for a in pop])

        rank0 = non_dominated_rank(Y)
        elite = [archs[i] for i in np.argsort(rank0, kind="stable")[: self.population // 2]]
        pop = list({a.key: a for a in elite}.values())
        while len(pop) < self.population:
            pop.append(self._random_arch(set()))
        genomes = {a.key: self._genome(a) for a in pop}
        for _ in range(self.generations):
            P = score(pop)
            rank = non_dominated_rank(P)
            crowd = crowding(P)
            children: list[Arch] = []
            for _ in range(self.population):
                i, j = self._tournament(rank, crowd), self._tournament(rank, crowd)
                gi, gj = genomes[pop[i].key], genomes[pop[j].key]
                child = {k: (gi[k] if self.rng.random() < 0.5 else gj[k]) for k in gi}
                fresh = self._genome(None)
                child = {k: (fresh[k] if self.rng.random() < self.mutation_prob else v) for k, v in child.items()}
                a = self._arch(child)
                if not self.space.is_feasible(a):
                    continue
                genomes.setdefault(a.key, child)
                children.append(a)
            union = list({a.key: a for a in pop + children}.values())
            U = score(union)
            r = non_dominated_rank(U)
            c = crowding(U)
            order = np.lexsort((-c, r))[: self.population]
            pop = [union[i] for i in order]
            for a in union:
                seen[a.key] = a
        cands = [a for k, a in seen.items() if k not in keys]
        if not cands:
            return []
        C = score(cands)
        front = Y[feas] if feas.any() else Y
        if len(pending):
            front = np.vstack([front, score(list(pending))])
        return self._select(C, cands, front)

    def _tournament(self, rank: np.ndarray, crowd: np.ndarray) -> int:
        i, j = self.rng.integers(len(rank), size=2)
        if rank[i] != rank[j]:
            return int(i if rank[i] < rank[j] else j)
        return int(i if crowd[i] >= crowd[j] else j)

    def _select(self, C: np.ndarray, cands: list[Arch], front: np.ndarray) -> list[Arch]:
        lo = np.minimum(front.min(axis=0), C.min(axis=0))
        hi = front.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        ref = np.full(C.shape[1], 1.1)
        F = (front[non_dominated_mask(front)] - lo) / span
        Z = (C - lo) / span
        pool = np.flatnonzero(non_dominated_rank(C) <= 1)
        chosen: list[int] = []
        base = hypervolume_of(F, ref)
        for _ in range(self.batch_size):
            if self.rng.random() < self.explore:
                continue
            best, gain = -1, 1e-12
            for i in pool:
                if i in chosen:
                    continue
                g = hypervolume_of(np.vstack([F, Z[i]]), ref) - base
                if g > gain:
                    best, gain = int(i), g
            if best < 0:
                break
            chosen.append(best)
            F = np.vstack([F, Z[best]])
            base += gain
        if len(chosen) < self.batch_size:
            rest = [i for i in np.lexsort((-crowding(C), non_dominated_rank(C))) if i not in chosen]
            n_rand = sum(self.rng.random() < self.explore for _ in range(self.batch_size - len(chosen)))
            chosen += [int(i) for i in rest[: self.batch_size - len(chosen) - n_rand]]
        return [cands[i] for i in chosen]
