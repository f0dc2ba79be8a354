"""``Planner``: the ``ehvi`` sampler's proposal step on plain arrays (no Optuna).

What it does and why each default: ``archlab.search.ehvi_sampler`` (the algorithm) and
``docs/search_measurements.md`` (each option's alternatives, measured on NAS-Bench-201).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from archlab.spaces import Arch, SearchSpace
from archlab.spaces.encoding import pairwise_features, pairwise_width

from .candidates import Moves, WholeSpace, pool_search
from .errors import SearchError
from .pareto import non_dominated_mask, non_dominated_rank
from .surrogate import CachedPosterior, GPModel, Warp, expected_hvi, hvi_known, quantile_draws

FEATURES = ("auto", "onehot", "pairwise")
SCALES = ("rank", "value")


class Planner:
    """The proposal step on plain arrays (no Optuna): see ``archlab.search.ehvi_sampler``.

    ``known``: ``{objective column: callable archs -> losses}`` for cheap objectives (a fitted
    latency predictor, an analytic count), computed exactly for every candidate (vectorised,
    cached per architecture) instead of modelled; losses as in ``Y`` (smaller is better).
    ``known_feasible``: callable ``archs -> bool array`` for constraints on cheap metrics, which
    candidates (and the random start) must meet; ``modelled``: the constraint columns of ``C``
    the feasibility GP models (default every column). ``whole_space``: a space with at most
    this many architectures is scored whole each trial instead of through a candidate pool, when
    the acquisition is exact and cheap (at most one modelled objective, two or three in all).
    ``n_quantiles``: quadrature nodes of the expected improvement with one uncertain objective.
    ``correct_known``: a GP on the evaluated architectures' residuals (observed value minus the
    cheap value, e.g. measured minus predicted latency) corrects the cheap values of candidates.
    ``acq_scale``: ``"rank"`` (the hypervolume acquisition on the modelled objectives' rank
    scores) or ``"value"``; ``focus_every``: every k-th proposal after the start maximises one
    modelled objective's expected improvement alone (0: never); see ``ehvi_sampler``. The
    acquisitions use the latent function's uncertainty, not an observation's (measured: a tie).
    ``model_known_after``: from this many distinct evaluations on, a cheap objective whose
    observed values differ from its cheap values is modelled, the cheap values standardised and
    appended to the GP's inputs (``None``: never); see ``ehvi_sampler``.
    ``features``: the GP's inputs, ``"onehot"`` (``space.encode(normalized=True)``),
    ``"pairwise"`` (with every pair of parameters' interactions appended, see
    ``archlab.spaces.encoding.pairwise_features``) or ``"auto"`` (pairwise up to
    ``PAIRWISE_MAX`` features); ``structure``: the space's structure features appended
    (``space.structure_features``: a cell's live edges and live operation counts, so equivalent
    cells are one point to the model).
    ``select_inputs``: with structure features and cheap (``known``) objectives, the GP of each
    objective modelled beside them chooses at every hyperparameter fit, by marginal likelihood,
    between the whole input and the structure features alone (with the cheap values of
    ``model_known_after`` appended): a cell's accuracy depends only on its live edges, so
    equivalent cells are one point to it, while a latency modelled after ``model_known_after``
    keeps every input (a dead edge still costs time). Without cheap objectives, and for the
    constraint GPs, every GP keeps every input. Off by default (not a clear win; on the
    constrained problem it missed part of the front more often).
    ``hints``: callables ``archs -> values``, cheap per-architecture information that is not an
    objective (a zero-cost proxy such as ``archlab.supernets.ranking.zero_cost.SynflowScorer``,
    FLOPs), each standardised over random architectures, times ``hint_weight``, appended to
    every GP's inputs; they are asked for every candidate scored (cached per architecture).
    ``run_search`` takes metric names (``sampler_options={"hints": ["synflow"]}``). Log SynFlow
    at weight 2 lowers the gap a little (``bench/zero_cost.py``, README); a 100-evaluation search
    on NAS-Bench-201 asks for about 13,000 hints, so they are off by default.

    Each option's alternatives, as measured on NAS-Bench-201: ``docs/search_measurements.md``.
    """

    PAIRWISE_MAX = 2000

    def __init__(self, space: SearchSpace, *, seed: int | None = None, n_startup: int = 5,
                 n_parents: int = 12, n_random: int = 200, local_rounds: int = 2, n_samples: int = 32,
                 refit_every: int = 8, max_fit: int = 300,
                 warp: bool = True, ref_margin: float = 0.5, max_condition: int = 400,
                 known: Mapping[int, Callable[[Sequence[Arch]], Any]] | None = None,
                 known_feasible: Callable[[Sequence[Arch]], Any] | None = None,
                 modelled: Sequence[int] | None = None, whole_space: int = 0, n_quantiles: int = 24,
                 features: str = "onehot", correct_known: bool = True, acq_scale: str = "rank",
                 focus_every: int = 3, model_known_after: int | None = 150, structure: bool = True,
                 select_inputs: bool = False, hints: Sequence[Callable[[Sequence[Arch]], Any]] = (),
                 hint_weight: float = 2.0) -> None:
        self.space = space
        self.seed = 0 if seed is None else int(seed)
        self.rng = np.random.default_rng(seed)
        self.moves = Moves(space, self.rng)
        self.n_startup, self.n_parents, self.n_random = int(n_startup), int(n_parents), int(n_random)
        self.local_rounds, self.n_samples = int(local_rounds), int(n_samples)
        self.model = GPModel(seed=self.seed, refit_every=refit_every, max_fit=max_fit)
        self.cons_model = GPModel(seed=self.seed + 1, refit_every=refit_every, max_fit=max_fit)
        self.res_model = GPModel(seed=self.seed + 2, refit_every=refit_every, max_fit=max_fit)
        self.correct_known = bool(correct_known)
        if acq_scale not in SCALES:
            raise SearchError(f"acq_scale must be one of {', '.join(SCALES)}, got {acq_scale!r}")
        if int(focus_every) < 0:
            raise SearchError(f"focus_every must be >= 0 (0: never), got {focus_every!r}")
        self.acq_scale, self.focus_every = acq_scale, int(focus_every)
        if model_known_after is not None and (isinstance(model_known_after, bool) or not isinstance(
                model_known_after, int | np.integer) or model_known_after < 0):
            raise SearchError(f"model_known_after must be an int >= 0 or None (never), got {model_known_after!r}")
        self.model_known_after = None if model_known_after is None else int(model_known_after)
        self._kscale: tuple[np.ndarray, np.ndarray] | None = None
        self.warp, self.ref_margin, self.max_condition = bool(warp), float(ref_margin), int(max_condition)
        self.known = dict(known or {})
        self.known_feasible = known_feasible
        if isinstance(hints, (str, bytes)) or not all(callable(h) for h in hints):
            raise SearchError("hints must be a list of callables archs -> values (e.g. a zero-cost proxy), got "
                              f"{hints!r}")
        if isinstance(hint_weight, bool) or not isinstance(hint_weight, int | float) or not hint_weight > 0:
            raise SearchError(f"hint_weight must be a number > 0, got {hint_weight!r}")
        self.hints, self.hint_weight = list(hints), float(hint_weight)
        self._hscale: tuple[np.ndarray, np.ndarray] | None = None
        self.modelled = None if modelled is None else list(modelled)
        self.whole_space_limit, self.n_quantiles = int(whole_space), int(n_quantiles)
        if features not in FEATURES:
            raise SearchError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
        names = space.feature_names()
        self.structure, self.select_inputs = bool(structure), bool(select_inputs)
        self.pairwise = features == "pairwise" or (features == "auto" and pairwise_width(names) <= self.PAIRWISE_MAX)
        #: the space's cost features appended too: only when every objective is modelled (see ``features_of``)
        self.costs = self.structure and not self.known
        #: widths of the featurized encoding and of the structure (and cost) features (``encode``'s two blocks)
        self._split = (self.featurize(np.zeros((1, len(names)))).shape[1],
                       (space.structure_features([]).shape[1] + (space.cost_features([]).shape[1] if self.costs else 0))
                       if self.structure else 0)
        self._whole: WholeSpace | bool | None = False  # False: not looked at yet
        self._whole_k: tuple[np.ndarray, np.ndarray] | None = None
        self._enc: dict[str, np.ndarray] = {}
        self._kval: dict[str, np.ndarray] = {}
        self._kok: dict[str, bool] = {}

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        """The GP's inputs of ``archs`` (cached per architecture): see ``features``."""
        new = list({a.key: a for a in archs if a.key not in self._enc}.values())
        if new:
            for a, x in zip(new, self.features_of(new)):
                self._enc[a.key] = x
        return np.array([self._enc[a.key] for a in archs], dtype=float).reshape(len(archs), -1)

    def features_of(self, archs: Sequence[Arch]) -> np.ndarray:
        """Uncached ``encode``: the featurized encoding, then the space's structure features and,
        when no objective is cheap (a cost such as latency is modelled from the start), its cost
        features (``space.cost_features``: a cell's operations counted on every edge, live or dead;
        with a cheap latency given they made the accuracy model worse, see ``archlab.spaces.cells``)."""
        X = self.featurize(self.space.encode_many(archs, normalized=True))
        blocks = [X]
        if self.structure:
            blocks.append(self.space.structure_features(archs))
            if self.costs:
                blocks.append(self.space.cost_features(archs))
        if self.hints:
            blocks.append(self.hint_values(archs))
        return np.hstack(blocks)

    def hint_values(self, archs: Sequence[Arch]) -> np.ndarray:
        """(n, len(hints)): each hint's values, standardised over random architectures, times
        ``hint_weight`` (the GP's inputs after the encoding; see ``hints``)."""
        def values(batch: Sequence[Arch]) -> np.ndarray:
            V = np.stack([np.asarray(h(batch), dtype=float).reshape(len(batch)) for h in self.hints], axis=1)
            if not np.isfinite(V).all():
                raise SearchError("hints: a hint returned a value that is not finite (NaN or infinite)")
            return V

        if self._hscale is None:
            V = values(self.reference_sample())
            self._hscale = V.mean(axis=0), np.where(V.std(axis=0) > 0, V.std(axis=0), 1.0)
        mu, sd = self._hscale
        return self.hint_weight * (values(archs) - mu) / sd

    def reference_sample(self) -> list[Arch]:
        """Distinct random architectures (up to 256, from a stream apart from the proposals')
        over which cheap values and hints are standardised."""
        draw = Moves(self.space, np.random.default_rng(self.seed + 3))
        return list({a.key: a for a in (draw.arch(draw.genome(None)) for _ in range(256))}.values())

    def input_views(self, width: int) -> list[np.ndarray] | None:
        """The input sets each GP chooses between by marginal likelihood (``select_inputs``), for
        encodings ``width`` wide: all of it, and the structure features with any cheap values
        appended (``encode_known``) alone; ``None`` (all of it) when the space declares no structure."""
        if not self.select_inputs or not self._split[1]:
            return None
        return [np.arange(width), np.arange(self._split[0], width)]

    def featurize(self, X: np.ndarray) -> np.ndarray:
        """The GP's inputs for encoding rows ``X`` (see ``features``)."""
        return pairwise_features(X, self.space.feature_names()) if self.pairwise else np.asarray(X, dtype=float)

    def encode_known(self, archs: Sequence[Arch]) -> np.ndarray:
        """The GP's inputs once the cheap objectives are modelled (``model_known_after``): the
        encoding with the cheap values appended, each standardised over random architectures."""
        if self._kscale is None:
            V = self.known_values(self.reference_sample())
            self._kscale = V.mean(axis=0), np.where(V.std(axis=0) > 0, V.std(axis=0), 1.0)
        mu, sd = self._kscale
        return np.hstack([self.encode(archs), (self.known_values(archs) - mu) / sd])

    def modelled_known(self, archs: Sequence[Arch], Y: np.ndarray) -> list[int]:
        """The cheap objective columns modelled at this step (``model_known_after``): those whose
        observed values differ from their cheap values (a measured latency against its predictor;
        a cheap value that is the objective itself stays exact)."""
        if not self.known or self.model_known_after is None or len(archs) < max(self.model_known_after, 1):
            return []
        kcols = sorted(self.known)
        K = self.known_values(archs)
        return [j for i, j in enumerate(kcols) if not np.allclose(Y[:, j], K[:, i], rtol=1e-6, atol=1e-9)]

    def known_values(self, archs: Sequence[Arch], cols: Sequence[int] | None = None) -> np.ndarray:
        """(n, len(known)) losses of the cheap objectives (columns in ``sorted(known)`` order, or
        the objective columns ``cols``)."""
        new = list({a.key: a for a in archs if a.key not in self._kval}.values())
        if new:
            vals = [np.asarray(self.known[j](new), dtype=float).reshape(len(new)) for j in sorted(self.known)]
            for i, a in enumerate(new):
                self._kval[a.key] = np.array([v[i] for v in vals])
        V = np.array([self._kval[a.key] for a in archs], dtype=float).reshape(len(archs), len(self.known))
        return V if cols is None else V[:, [sorted(self.known).index(j) for j in cols]]

    def feasible(self, archs: Sequence[Arch]) -> np.ndarray:
        """Whether each architecture meets the space's and the cheap constraints."""
        new = list({a.key: a for a in archs if a.key not in self._kok}.values())
        if new:
            ok = np.ones(len(new), dtype=bool)
            if self.known_feasible is not None:
                ok &= np.asarray(self.known_feasible(new), dtype=bool).reshape(len(new))
            if self.space.constraints:
                ok &= np.array([self.space.is_feasible(a) for a in new], dtype=bool)
            self._kok.update({a.key: bool(v) for a, v in zip(new, ok)})
        return np.array([self._kok[a.key] for a in archs], dtype=bool)

    def whole(self) -> WholeSpace | None:
        """The enumerated space when it is small enough (see ``whole_space``), else ``None``."""
        if self._whole is False:
            self._whole = WholeSpace.of(self.space, self.whole_space_limit, self.features_of)
            if self._whole is not None:
                for a, x in zip(self._whole.archs, self._whole.X):
                    self._enc.setdefault(a.key, x)
                self._post = (CachedPosterior(self._whole.X), CachedPosterior(self._whole.X))
        return self._whole  # type: ignore[return-value]

    def random_arch(self, taken: set[str]) -> Arch:
        a = None
        for _ in range(500):
            a = self.moves.arch(self.moves.genome(None))
            if a.key not in taken and self.feasible([a])[0]:
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
        m = Y.shape[1]
        as_input = self.modelled_known(archs, Y)  # cheap values as GP inputs of these modelled columns
        encode = self.encode_known if as_input else self.encode
        unknown = [j for j in range(m) if j in as_input or j not in self.known]
        kcols = [j for j in sorted(self.known) if j not in as_input]
        rows = self._conditioning_rows(Y, C)
        X = encode([archs[i] for i in rows])
        warps = [Warp(Y[rows, j]) for j in unknown] if self.warp else []
        if unknown:
            Yu = Y[rows][:, unknown]
            views = self.input_views(X.shape[1]) if self.known else None  # see ``select_inputs``
            self.model.fit(X, np.column_stack([w.z for w in warps]) if warps else Yu, seen=len(Y), views=views,
                           allowed=None if views is None else [[0] if j in as_input else [0, 1] for j in unknown])
        correct = self.correct_known and bool(kcols)
        if correct:  # the cheap values' errors on what was evaluated, for a correction of the rest
            sub = [archs[i] for i in rows]
            self.res_model.fit(X, Y[rows][:, kcols] - self.known_values(sub, kcols), seen=len(Y))

        def cheap(cands: Sequence[Arch], Xc: np.ndarray | None = None, K: np.ndarray | None = None) -> np.ndarray:
            """Known losses of ``cands``, corrected by the residual model's mean when asked."""
            if not kcols:
                return np.zeros((len(cands), 0))
            K = self.known_values(cands, kcols) if K is None else K
            if not correct or not len(cands):
                return K
            return K + self.res_model.predict(encode(cands) if Xc is None else Xc)[0]

        has_c = C is not None and C.size > 0
        cm_cols = ((list(range(C.shape[1])) if self.modelled is None else [c for c in self.modelled if c < C.shape[1]])
                   if has_c and C is not None else [])
        if cm_cols and C is not None:
            self.cons_model.fit(X, C[rows][:, cm_cols], seen=len(Y))
        feas = np.all(C <= 0, axis=1) if has_c and C is not None else np.ones(len(archs), dtype=bool)
        in_z = self.acq_scale == "rank" and bool(warps)
        if in_z:  # the acquisition on the modelled columns' rank scores instead of their values
            Y = Y.copy()
            for i, j in enumerate(unknown):
                Y[:, j] = warps[i].forward(Y[:, j])
        lo, hi = Y.min(axis=0), Y.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        ref = np.full(m, 1.0 + self.ref_margin)

        def to_loss(Zu: np.ndarray, K: np.ndarray) -> np.ndarray:
            """Model-space draws of the unknown columns (..., u) and known losses -> normalised losses."""
            if warps and not in_z:
                Zu = np.stack([w.inverse(Zu[..., i]) for i, w in enumerate(warps)], axis=-1)
            full = np.empty((*np.broadcast_shapes(Zu.shape[:-1], K.shape[:-1]), m))
            full[..., unknown] = Zu
            full[..., kcols] = K
            return (full - lo) / span

        focus = self._focus(len(archs) + len(pending), unknown, m, feas[rows])
        front = np.zeros((0, m))  # a focus step does not use the front
        if focus is None:
            front = (Y[feas] - lo) / span
            if len(pending):
                Zp = self.model.predict(encode(pending))[0] if unknown else np.zeros((len(pending), 0))
                front = np.vstack([front, to_loss(Zp, cheap(pending))])
            front = front[non_dominated_mask(front)] if len(front) else front

        def score(cands: list[Arch], Xc: np.ndarray | None = None, pred: Any = None, cpred: Any = None,
                  K: np.ndarray | None = None) -> np.ndarray:
            """Acquisition of ``cands`` (``pred``/``cpred``: their objective / constraint posteriors
            and ``K`` their known losses, when already computed)."""
            Xc = encode(cands) if Xc is None and (pred is None or cpred is None or correct) else Xc
            pof = np.ones(len(cands))
            if cm_cols:
                if cpred is None:
                    assert Xc is not None  # encoded above whenever a posterior is missing
                    cpred = self.cons_model.predict(Xc)
                cmean, cstd = cpred
                pof = np.prod(norm.cdf(-cmean / cstd), axis=1)
            if not feas.any():
                return pof
            K = cheap(cands, Xc, K)
            if not unknown:
                point = to_loss(np.zeros((len(cands), 0)), K)
                return hvi_known(front, point, point[:, :1], ref, 0) * pof
            if pred is None:
                assert Xc is not None
                pred = self.model.predict(Xc)
            mean, std = pred
            if len(unknown) == 1 and m in (2, 3):
                draws = to_loss(quantile_draws(mean[:, 0], std[:, 0], self.n_quantiles)[..., None], K[:, None, :])
                acq = hvi_known(front, to_loss(mean, K), draws[..., unknown[0]], ref, unknown[0])
            else:
                mean_l, std_l = np.zeros((len(cands), m)), np.full((len(cands), m), 1e-9)
                mean_l[:, unknown], std_l[:, unknown] = mean, std
                mean_l[:, kcols] = (K - lo[kcols]) / span[kcols]

                def inverse(Z: np.ndarray) -> np.ndarray:
                    return to_loss(Z[..., unknown], Z[..., kcols] * span[kcols] + lo[kcols] if kcols else Z[..., :0])

                acq = expected_hvi(front, mean_l, std_l, ref, self.n_samples, seed=self.seed + len(archs),
                                   inverse=inverse)
            return acq * pof + 1e-12 * pof * std.sum(axis=1)  # ties: the more uncertain

        if focus is not None:  # this trial: the expected improvement of one modelled objective alone
            i = unknown.index(focus)
            target = warps[i].z if warps else Y[rows, focus]
            best = float(np.min(target[feas[rows]]))

            def focus_score(cands: list[Arch], Xc: np.ndarray | None = None, pred: Any = None, cpred: Any = None,
                      K: np.ndarray | None = None) -> np.ndarray:
                if Xc is None and (pred is None or (cm_cols and cpred is None)):
                    Xc = encode(cands)
                mean, std = pred if pred is not None else self.model.predict(_given(Xc))
                g = (best - mean[:, i]) / std[:, i]
                ei = std[:, i] * (g * norm.cdf(g) + norm.pdf(g))
                if cm_cols:
                    cmean, cstd = cpred if cpred is not None else self.cons_model.predict(_given(Xc))
                    ei = ei * np.prod(norm.cdf(-cmean / cstd), axis=1)
                return ei

        acquire = score if focus is None else focus_score
        whole = self.whole() if len(unknown) <= 1 and m in (2, 3) and not as_input else None  # the exact acquisition's case
        if whole is not None:
            if self._whole_k is None:  # cheap values and feasibility of every architecture, once
                self._whole_k = (self.known_values(whole.archs), self.feasible(whole.archs))
            idx = whole.untaken(taken)
            idx = idx[self._whole_k[1][idx]]
            cands = [whole.archs[i] for i in idx]
            if not cands:
                return self.random_arch(taken)
            keys = [archs[i].key for i in rows]
            pred = cpred = None
            if unknown:
                mean, std = self._post[0].predict(self.model, keys)
                pred = mean[idx], std[idx]
            if cm_cols:
                cmean, cstd = self._post[1].predict(self.cons_model, keys)
                cpred = cmean[idx], cstd[idx]
            return cands[int(np.argmax(acquire(cands, None, pred, cpred, self._whole_k[0][idx])))]
        rank = non_dominated_rank(np.where(feas[:, None], Y, Y + 1e6)) if focus is None else \
            np.where(feas, Y[:, focus], np.inf)
        parents = [archs[i] for i in np.argsort(rank, kind="stable")[: self.n_parents]]
        cands, acq = pool_search(self.moves, parents, acquire, taken, self.feasible, self.n_random, self.local_rounds)
        return cands[int(np.argmax(acq))] if cands else self.random_arch(taken)

    def _focus(self, n: int, unknown: list[int], m: int, feasible_rows: np.ndarray) -> int | None:
        """The modelled objective whose expected improvement alone picks this proposal (every
        ``focus_every``-th one, cycling over the modelled objectives), or ``None``: the
        hypervolume acquisition. Measured on NAS-Bench-201 (``bench/search.py``): with the cheap
        latency known, the hypervolume improvement spends most evaluations on the front's
        crowded low-latency end and finds its high-accuracy end late; a focus step every third
        trial finds it early (a bounded variant: ``docs/search_measurements.md``)."""
        if not self.focus_every or m < 2 or not unknown or not feasible_rows.any():
            return None
        step = n - self.n_startup
        if step % self.focus_every != self.focus_every - 1:
            return None
        return unknown[(step // self.focus_every) % len(unknown)]

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


def _given(X: np.ndarray | None) -> np.ndarray:
    """``X``, checked present (encoded wherever a posterior is missing)."""
    assert X is not None
    return X
