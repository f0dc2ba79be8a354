"""Surrogates with uncertainty and hypervolume-improvement acquisitions (numpy, scikit-learn).

``GPModel``: one Gaussian process per output on the space's normalised encoding (isotropic
Matern 5/2 + noise, targets standardised). The length scale and noise level are chosen by
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

from collections.abc import Callable

import numpy as np
from scipy.linalg import solve_triangular


class GPModel:
    """Independent GPs for the columns of ``Y`` (see module docstring)."""

    LENGTHS = (0.75, 1.5, 3.0, 6.0, 12.0)  # Matern length scales on the encoding (grid)
    ADDITIVE = (0.0, 0.3, 0.6, 0.9)  # weight of the additive (linear on the encoding) part (grid)
    NOISES = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3)  # noise variance / signal variance (grid)

    def __init__(self, seed: int = 0, refit_every: int = 8, max_fit: int = 300) -> None:
        self.seed = int(seed)
        self.refit_every = int(refit_every)
        self.max_fit = int(max_fit)
        self._hyper: list[tuple[float, float, float]] = []
        self._fitted_at = -10**9
        self._state: list[tuple[np.ndarray, np.ndarray, float, float, tuple[float, float, float]]] = []
        self._X = np.zeros((0, 0))

    @staticmethod
    def _matern(D: np.ndarray, length: float) -> np.ndarray:
        r = np.sqrt(5.0) * np.sqrt(np.maximum(D, 0.0)) / length
        return (1.0 + r + r * r / 3.0) * np.exp(-r)

    def _kernel(self, D: np.ndarray, G: np.ndarray, hyper: tuple[float, float, float]) -> np.ndarray:
        length, w, _ = hyper
        return (1.0 - w) * self._matern(D, length) + w * G

    def _pairs(self, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and the scaled linear kernel ``A B^T / scale`` between rows."""
        G = A @ B.T
        D = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * G
        return D, G / self._scale

    def _select(self, D: np.ndarray, G: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
        """Grid maximum of the marginal likelihood for standardised ``y``."""
        best, arg = -np.inf, (3.0, 0.0, 1e-2)
        n = len(y)
        eye = np.eye(n)
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
                        best, arg = ll, (length, w, noise)
        return arg

    def interval(self, seen: int) -> int:
        """Observations between hyperparameter fits: ``refit_every``, and 2 % of ``seen`` beyond
        50 x ``refit_every`` (the grid search is the costly part; the choice settles with data)."""
        return max(self.refit_every, seen // 50)

    def fit(self, X: np.ndarray, Y: np.ndarray, seen: int | None = None) -> GPModel:
        """Condition on ``X`` (n, d) and ``Y`` (n, k); hyperparameters refitted when due (see
        ``interval``; ``seen``: how many observations there are in all, default n)."""
        X = np.asarray(X, dtype=float)
        n = len(X)
        self._scale = max(float(np.max((X * X).sum(1))), 1e-12)
        D, G = self._pairs(X, X)
        seen = n if seen is None else int(seen)
        refit = len(self._hyper) != Y.shape[1] or seen - self._fitted_at >= self.interval(seen)
        if refit:
            rows = np.arange(n)
            if n > self.max_fit:
                rows = np.sort(np.random.default_rng(self.seed + n).choice(n, self.max_fit, replace=False))
            sub = np.ix_(rows, rows)
            self._hyper = []
            for j in range(Y.shape[1]):
                y = Y[rows, j]
                self._hyper.append(self._select(D[sub], G[sub], (y - y.mean()) / (y.std() or 1.0)))
            self._fitted_at = seen
        self._state = []
        for j, hyper in enumerate(self._hyper):
            y = Y[:, j]
            mu, sd = float(y.mean()), float(y.std() or 1.0)
            L = _cholesky(self._kernel(D, G, hyper), hyper[2] + 1e-8)
            alpha = solve_triangular(L.T, solve_triangular(L, (y - mu) / sd, lower=True), lower=False)
            self._state.append((L, alpha, mu, sd, hyper))
        self._X = X
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (latent function, no noise), each (len(X), k)."""
        X = np.asarray(X, dtype=float)
        D, G = self._pairs(X, self._X)
        prior = (X * X).sum(1) / self._scale
        mean, std = [], []
        for L, alpha, mu, sd, hyper in self._state:
            Ks = self._kernel(D, G, hyper)
            v = solve_triangular(L, Ks.T, lower=True)
            w = hyper[1]
            var = (1.0 - w) + w * prior - (v * v).sum(0)
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
