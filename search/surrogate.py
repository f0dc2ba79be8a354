"""Surrogates with uncertainty and hypervolume-improvement acquisitions (numpy, scikit-learn).

``GPModel``: one Gaussian process per output on the space's normalised encoding (isotropic
Matern 5/2 plus a linear part, + noise, targets standardised). The length scale, linear weight
and noise level (and, given several candidate input sets, each output's inputs) are chosen by
maximum marginal likelihood on a small grid every ``refit_every`` new observations (on at most
``max_fit`` rows), so the cost per proposal stays a Cholesky solve and a prediction.

Acquisitions take losses (smaller is better in every column):

- ``hvi_2d(front, P, ref)``: exact hypervolume improvement of each row of ``P`` over ``front``
  (vectorised staircase sum, any number of rows);
- ``hvi_mc(front, P, ref, ...)``: the same for any number of objectives, estimated on a fixed
  set of uniform points in the box below ``ref`` that ``front`` does not dominate;
- ``expected_hvi(front, mean, std, ref, ...)``: Monte-Carlo expected hypervolume improvement
  under independent normal predictions (``n_samples`` draws, seeded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular


class GPModel:
    """Independent GPs for the columns of ``Y`` (see module docstring).

    ``fit(..., views=...)``: candidate input sets (column indices of ``X``); each output's GP is
    fitted on the one whose marginal likelihood is largest at the hyperparameter fit (a cell's
    accuracy depends only on its live edges, its latency on every edge: each column finds which
    inputs explain it). Default: all of ``X``.

    One length scale for every input, chosen on a grid. On NAS-Bench-201 an ARD kernel (a
    length scale per input, fitted by maximum likelihood) as the accuracy model did worse, and
    averaging over the grid instead of taking its best point was a tie
    (``docs/search_measurements.md``): 60 length scales (the cell encoding's inputs) from
    50-100 observations appear to overfit.
    """

    LENGTHS = (0.75, 1.5, 3.0, 6.0, 12.0)  # Matern length scales on the encoding (grid)
    ADDITIVE = (0.0, 0.3, 0.6, 0.9)  # weight of the additive (linear on the encoding) part (grid)
    NOISES = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3)  # noise variance / signal variance (grid)

    def __init__(self, seed: int = 0, refit_every: int = 8, max_fit: int = 300) -> None:
        self.seed = int(seed)
        self.refit_every = int(refit_every)
        self.max_fit = int(max_fit)
        self._hyper: list[tuple[float, float, float, int]] = []  # length, additive weight, noise, view
        self._fitted_at = -10**9
        self._state: list[tuple[np.ndarray, np.ndarray, float, float, tuple[float, float, float, int]]] = []
        self._X = np.zeros((0, 0))
        self._views: list[np.ndarray] = []
        self._allowed: list[list[int]] = []
        self._scales: list[float] = []

    @staticmethod
    def _matern(D: np.ndarray, length: float) -> np.ndarray:
        r = np.sqrt(5.0) * np.sqrt(np.maximum(D, 0.0)) / length
        return (1.0 + r + r * r / 3.0) * np.exp(-r)

    def _kernel(self, D: np.ndarray, G: np.ndarray, hyper: tuple[float, ...]) -> np.ndarray:
        length, w = hyper[0], hyper[1]
        return (1.0 - w) * self._matern(D, length) + w * G

    def pairs(self, A: np.ndarray, B: np.ndarray, view: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and the scaled linear kernel ``A B^T / scale`` between rows of the
        full encodings ``A`` and ``B``, on input set ``view``."""
        cols = self._views[view]
        A, B = A[:, cols], B[:, cols]
        G = A @ B.T
        D = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * G
        return D, G / self._scales[view]

    def prior(self, X: np.ndarray, view: int) -> np.ndarray:
        """The linear part's prior variance of each row of ``X`` on input set ``view``."""
        A = X[:, self._views[view]]
        return (A * A).sum(1) / self._scales[view]

    def _select(self, geometry: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray,
                allowed: Sequence[int]) -> tuple[float, float, float, int]:
        """Grid maximum of the marginal likelihood for standardised ``y`` over the input sets
        ``allowed`` and the hyperparameters."""
        best, arg = -np.inf, (3.0, 0.0, 1e-2, int(allowed[0]))
        n = len(y)
        eye = np.eye(n)
        for v in allowed:
            D, G = geometry[v]
            for length in self.LENGTHS:
                M = self._matern(D, length)
                for w in self.ADDITIVE:
                    K0 = (1.0 - w) * M + w * G
                    for noise in self.NOISES:
                        try:
                            L = np.linalg.cholesky(K0 + noise * eye)
                        except np.linalg.LinAlgError:
                            continue
                        a = solve_triangular(L, y, lower=True)
                        ll = -0.5 * a @ a - np.log(np.diag(L)).sum()
                        if ll > best:
                            best, arg = ll, (length, w, noise, v)
        return arg

    def interval(self, seen: int) -> int:
        """Observations between hyperparameter fits: ``refit_every``, and 2 % of ``seen`` beyond
        50 x ``refit_every`` (the grid search is the costly part; the choice settles with data)."""
        return max(self.refit_every, seen // 50)

    def fit(self, X: np.ndarray, Y: np.ndarray, seen: int | None = None,
            views: Sequence[np.ndarray] | None = None, allowed: Sequence[Sequence[int]] | None = None) -> GPModel:
        """Condition on ``X`` (n, d) and ``Y`` (n, k); hyperparameters (and each column's input
        set among ``views``; ``allowed[j]``: the indices of those column j may use, default all)
        refitted when due (see ``interval``; ``seen``: how many observations there are in all,
        default n)."""
        X = np.asarray(X, dtype=float)
        n = len(X)
        vs = [np.arange(X.shape[1])] if views is None else [np.asarray(v, dtype=int) for v in views]
        allow = [list(range(len(vs)))] * Y.shape[1] if allowed is None else [list(a) for a in allowed]
        same = (len(vs) == len(self._views) and all(np.array_equal(a, b) for a, b in zip(vs, self._views))
                and allow == self._allowed)
        self._views, self._allowed = vs, allow
        self._scales = [max(float(np.max((X[:, v] ** 2).sum(1))), 1e-12) if n else 1.0 for v in vs]
        seen = n if seen is None else int(seen)
        refit = not same or len(self._hyper) != Y.shape[1] or seen - self._fitted_at >= self.interval(seen)
        geometry: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if refit:
            rows = np.arange(n)
            if n > self.max_fit:
                rows = np.sort(np.random.default_rng(self.seed + n).choice(n, self.max_fit, replace=False))
            sub = [self.pairs(X[rows], X[rows], v) for v in range(len(vs))]
            self._hyper = []
            for j in range(Y.shape[1]):
                y = Y[rows, j]
                self._hyper.append(self._select(sub, (y - y.mean()) / (y.std() or 1.0), allow[j]))
            self._fitted_at = seen
        self._state = []
        for j, hyper in enumerate(self._hyper):
            if hyper[3] not in geometry:
                geometry[hyper[3]] = self.pairs(X, X, hyper[3])
            y = Y[:, j]
            mu, sd = float(y.mean()), float(y.std() or 1.0)
            L = _cholesky(self._kernel(*geometry[hyper[3]], hyper), hyper[2] + 1e-8)
            alpha = solve_triangular(L.T, solve_triangular(L, (y - mu) / sd, lower=True), lower=False)
            self._state.append((L, alpha, mu, sd, hyper))
        self._X = X
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (latent function, no noise), each (len(X), k)."""
        X = np.asarray(X, dtype=float)
        geometry: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        mean, std = [], []
        for L, alpha, mu, sd, hyper in self._state:
            v = hyper[3]
            if v not in geometry:
                geometry[v] = (*self.pairs(X, self._X, v), self.prior(X, v))
            D, G, prior = geometry[v]
            Ks = self._kernel(D, G, hyper)
            s = solve_triangular(L, Ks.T, lower=True)
            w = hyper[1]
            var = (1.0 - w) + w * prior - (s * s).sum(0)
            mean.append(mu + sd * (Ks @ alpha))
            std.append(sd * np.sqrt(np.clip(var, 1e-12, None)))
        return np.stack(mean, axis=1), np.maximum(np.stack(std, axis=1), 1e-9)


def _cholesky(K: np.ndarray, noise: float) -> np.ndarray:
    """Cholesky factor of ``K + noise I``, the noise raised tenfold until it factorises."""
    eye = np.eye(len(K))
    for _ in range(8):
        try:
            return np.linalg.cholesky(K + noise * eye)
        except np.linalg.LinAlgError:
            noise *= 10.0
    return np.linalg.cholesky(K + noise * eye)


class Warp:
    """Monotone map of a column to normal scores (its empirical ranks), and back.

    ``forward`` turns observed values into ``Phi^-1((rank + 0.5) / n)``; ``inverse`` maps any
    score back by linear interpolation between the observed (score, value) pairs, extended
    linearly past the ends with the slope of the outer tenth of the data. A GP on the scores
    is not dragged by a few extreme values (collapsed architectures at chance accuracy).
    """

    def __init__(self, y: np.ndarray) -> None:
        from scipy.stats import norm, rankdata

        y = np.asarray(y, dtype=float)
        self.z = norm.ppf((rankdata(y) - 0.5) / len(y))
        order = np.argsort(self.z, kind="stable")
        self.zs, self.ys = self.z[order], y[order]
        k = max(1, len(y) // 10)
        dz_lo, dz_hi = self.zs[k] - self.zs[0], self.zs[-1] - self.zs[-1 - k]
        self.lo_slope = (self.ys[k] - self.ys[0]) / dz_lo if len(y) > k and dz_lo > 0 else 0.0
        self.hi_slope = (self.ys[-1] - self.ys[-1 - k]) / dz_hi if len(y) > k and dz_hi > 0 else 0.0

    def forward(self, y: np.ndarray) -> np.ndarray:
        """Scores of values ``y`` (interpolated between the observed pairs, clamped at the ends)."""
        return np.interp(np.asarray(y, dtype=float), self.ys, self.zs)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        out = np.interp(z, self.zs, self.ys)
        out = np.where(z < self.zs[0], self.ys[0] + (z - self.zs[0]) * self.lo_slope, out)
        return np.where(z > self.zs[-1], self.ys[-1] + (z - self.zs[-1]) * self.hi_slope, out)


def hvi_2d(front: np.ndarray, P: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact hypervolume improvement of each row of ``P`` (.., 2) over ``front`` (n, 2)."""
    P = np.asarray(P, dtype=float)
    F = np.asarray(front, dtype=float).reshape(-1, 2)
    F = F[np.all(ref > F, axis=1)]
    F = F[np.argsort(F[:, 0], kind="stable")]
    # staircase: h(x) = best f2 among front points with f1 <= x (ref[1] left of the first)
    best = np.minimum.accumulate(F[:, 1]) if len(F) else np.zeros(0)
    edges = np.concatenate([[-np.inf], F[:, 0], [ref[0]]])
    heights = np.concatenate([[ref[1]], best])
    x0 = P[..., :1]
    lo = np.maximum(edges[:-1], x0)
    hi = np.minimum(edges[1:], ref[0])
    width = np.clip(hi - lo, 0.0, None)
    return np.sum(width * np.clip(heights - P[..., 1:2], 0.0, None), axis=-1)


class MCBox:
    """Uniform points in ``[lo, ref)`` not dominated by ``front``, for ``hvi_mc``."""

    def __init__(self, front: np.ndarray, lo: np.ndarray, ref: np.ndarray, n: int = 4096, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        U = lo + rng.random((n, len(ref))) * (ref - lo)
        dominated = np.zeros(n, dtype=bool)
        for y in np.asarray(front, dtype=float).reshape(-1, len(ref)):
            dominated |= np.all(y <= U, axis=1)
        self.points = U[~dominated]
        self.cell = float(np.prod(ref - lo)) / n

    def hvi(self, P: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Estimated improvement of each row of ``P`` (k, m)."""
        out = np.zeros(len(P))
        for s in range(0, len(P), chunk):
            block = P[s:s + chunk, None, :] <= self.points[None, :, :]
            out[s:s + chunk] = block.all(axis=2).sum(axis=1) * self.cell
        return out


def expected_hvi(front: np.ndarray, mean: np.ndarray, std: np.ndarray, ref: np.ndarray,
                 n_samples: int = 32, seed: int = 0, inverse: Callable[[np.ndarray], np.ndarray] | None = None,
                 ) -> np.ndarray:
    """Monte-Carlo expected hypervolume improvement of each candidate (rows of ``mean``).

    ``mean``/``std`` are normal predictions in the model's space; ``inverse`` maps draws
    (..., m) from there to the losses ``front`` and ``ref`` are in (identity by default).
    Two objectives: exact improvement per draw (common random numbers across candidates).
    More: ``MCBox`` improvement of the optimistic point ``mean - std`` only, which keeps the
    cost linear in the pool.
    """
    inverse = inverse or (lambda z: z)
    m = mean.shape[1]
    if m == 2:
        z = np.random.default_rng(seed).standard_normal((n_samples, 1, 2))
        return hvi_2d(front, inverse(mean[None] + std[None] * z), ref).mean(axis=0)
    P = inverse(mean - std)
    lo = np.minimum(np.min(P, axis=0), np.min(front, axis=0) if len(front) else ref)
    return MCBox(front, lo, ref, seed=seed).hvi(P)


def quantile_draws(mean: np.ndarray, std: np.ndarray, k: int = 24) -> np.ndarray:
    """``k`` stratified normal quantiles per row of ``mean``/``std`` (n,) -> (n, k): a
    deterministic quadrature of the predictive distribution (midpoint of each 1/k stratum)."""
    from scipy.stats import norm

    q = norm.ppf((np.arange(k) + 0.5) / k)
    return mean[:, None] + std[:, None] * q[None, :]


def _edges(col: np.ndarray, ref: float) -> np.ndarray:
    """Cell edges along one known axis: -inf, the front's distinct coordinates below ``ref``, ``ref``."""
    xs = np.unique(col[col < ref])
    return np.concatenate([[-np.inf], xs, [ref]])


def _widths(edges: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(n, cells): length of each cell ``[e_i, e_i+1)`` right of each candidate coordinate ``at``."""
    lo = np.maximum(edges[None, :-1], at[:, None])
    return np.clip(edges[None, 1:] - lo, 0.0, None)


def ehvi_known(front: np.ndarray, known: np.ndarray, draws: np.ndarray, ref: np.ndarray, uncertain: int,
               chunk: int = 512) -> np.ndarray:
    """Expected hypervolume improvement when one objective is uncertain and the rest are known.

    ``front`` (F, m) and ``ref`` (m,) are losses; column ``uncertain`` is predicted, the other
    one or two columns are known exactly for every candidate (``known`` (n, m-1), in column
    order without ``uncertain``). ``draws`` (n, k) are equally weighted samples (or quadrature
    nodes, see ``quantile_draws``) of each candidate's uncertain loss.

    The known axes are cut into cells at the front's coordinates; over the cell with lower
    corner ``c`` the front covers the uncertain axis from ``m_c`` (the smallest uncertain
    loss of the front points dominating ``c`` on the known axes; ``ref`` when none) upwards,
    so a candidate at uncertain loss ``e`` adds ``sum_c area_c (m_c - e)+`` (the part of each
    cell inside the candidate's box), exact for every draw; the mean over draws is returned.
    """
    front = np.asarray(front, dtype=float).reshape(-1, len(ref))
    kcols = [j for j in range(len(ref)) if j != uncertain]
    if len(kcols) not in (1, 2):
        raise ValueError(f"ehvi_known handles 1 or 2 known objectives, got {len(kcols)}")
    F = front[np.all(front < ref, axis=1)]
    edges = [_edges(F[:, j], ref[j]) for j in kcols]
    fu = F[:, uncertain]
    ru = ref[uncertain]
    if len(kcols) == 1:
        corner = edges[0][:-1]  # (cells,)
        dom = F[:, kcols[0]][None, :] <= corner[:, None]  # (cells, F)
        m_cell = np.where(dom, fu[None, :], ru).min(axis=1, initial=ru)
    else:
        c1, c2 = edges[0][:-1], edges[1][:-1]
        dom = (F[:, kcols[0]][None, None, :] <= c1[:, None, None]) & (F[:, kcols[1]][None, None, :] <= c2[None, :, None])
        m_cell = np.where(dom, fu[None, None, :], ru).min(axis=2, initial=ru)  # (c1, c2)
    draws = np.minimum(np.asarray(draws, dtype=float), ru)
    out = np.zeros(len(draws))
    for s in range(0, len(draws), chunk):
        d = draws[s:s + chunk]
        w1 = _widths(edges[0], known[s:s + chunk, 0])
        if len(kcols) == 1:
            gain = np.clip(m_cell[None, :, None] - d[:, None, :], 0.0, None).mean(axis=2)  # (n, cells)
            out[s:s + chunk] = (w1 * gain).sum(axis=1)
        else:
            w2 = _widths(edges[1], known[s:s + chunk, 1])
            acc = np.zeros(len(d))
            for q in range(d.shape[1]):
                g = np.clip(m_cell[None, :, :] - d[:, q, None, None], 0.0, None)  # (n, c1, c2)
                acc += np.einsum("ni,nj,nij->n", w1, w2, g, optimize=True)
            out[s:s + chunk] = acc / d.shape[1]
    return out


class CachedPosterior:
    """Posterior of a fitted ``GPModel`` on one fixed matrix ``X`` (every architecture of a small
    space), kept up to date incrementally.

    When the model's conditioning rows only grew since the last call (same leading rows, same
    hyperparameters and scale), the cross-kernel gains the new columns and the solved factor
    ``V = L^-1 K(X_train, X)`` gains its new rows by forward substitution: O(len(X) x n) per new
    row instead of O(len(X) x n^2) for a fresh solve. Otherwise it is rebuilt.
    """

    def __init__(self, X: np.ndarray) -> None:
        self.X = np.asarray(X, dtype=float)
        self._keys: list[str] = []
        self._outs: list[dict[str, Any]] = []
        self._scale: list[float] | None = None

    def predict(self, model: GPModel, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (len(X), k) of ``model``, conditioned on rows named ``keys``."""
        n_old = len(self._keys)
        grow = (self._scale == model._scales and len(self._outs) == len(model._state) and n_old <= len(keys)
                and self._keys == keys[:n_old]
                and all(o["hyper"] == s[4] for o, s in zip(self._outs, model._state)))
        if not grow:
            self._keys, self._scale, n_old = [], list(model._scales), 0
            self._outs = [{"hyper": s[4], "Ks": np.zeros((len(self.X), 0)), "V": np.zeros((0, len(self.X))),
                           "ss": np.zeros(len(self.X))} for s in model._state]
        Xn = model._X[n_old:]
        geometry: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        mean, std = [], []
        for o, (L, alpha, mu, sd, hyper) in zip(self._outs, model._state):
            if len(Xn):
                if hyper[3] not in geometry:
                    geometry[hyper[3]] = model.pairs(self.X, Xn, hyper[3])
                K_new = model._kernel(*geometry[hyper[3]], hyper)
                Ks = np.hstack([o["Ks"], K_new])
                V = np.vstack([o["V"], np.zeros((len(Xn), len(self.X)))])
                for i in range(n_old, len(keys)):
                    V[i] = (Ks[:, i] - L[i, :i] @ V[:i]) / L[i, i]
                o["Ks"], o["V"], o["ss"] = Ks, V, o["ss"] + (V[n_old:] ** 2).sum(0)
            w = hyper[1]
            var = (1.0 - w) + w * model.prior(self.X, hyper[3]) - o["ss"]
            mean.append(mu + sd * (o["Ks"] @ alpha))
            std.append(sd * np.sqrt(np.clip(var, 1e-12, None)))
        self._keys = list(keys)
        return np.stack(mean, axis=1), np.maximum(np.stack(std, axis=1), 1e-9)


def hvi_known(front: np.ndarray, point: np.ndarray, draws: np.ndarray, ref: np.ndarray, uncertain: int) -> np.ndarray:
    """``ehvi_known`` on the candidates whose optimistic point (the smallest draw on the
    uncertain axis, the known values elsewhere) the front does not dominate; 0 for the rest."""
    opt = point.copy()
    opt[:, uncertain] = draws.min(axis=1)
    alive = np.all(opt < ref, axis=1)
    if len(front):
        dominated = np.zeros(len(opt), dtype=bool)
        for f in front:
            dominated |= np.all(f <= opt, axis=1)
        alive &= ~dominated
    out = np.zeros(len(point))
    if alive.any():
        rest = np.delete(point[alive], uncertain, axis=1)
        out[alive] = ehvi_known(front, rest, draws[alive], ref, uncertain)
    return out
