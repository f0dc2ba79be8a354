"""Statistics for claims with intervals: bootstrap intervals, paired differences, rank
correlations with intervals, the median over seeds with an order-statistic interval.

Thin over ``scipy.stats`` (``bootstrap``, ``kendalltau``, ``spearmanr``, ``binom``); numpy and
scipy only. Every function returns an :class:`Interval` (estimate, low, high) so callers write
"X beats Y" only when :attr:`Interval.excludes_zero` holds for the paired difference.

Conventions: ``level`` is the two-sided confidence level (0.95 = 95 %); ``seed`` makes every
resampling reproducible; resampling is over the units that were sampled (architectures for a
rank correlation, seeds for a per-seed figure), jointly for all arrays that describe the same
units (``paired``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as _st

BootstrapMethod = Literal["percentile", "bca", "basic"]
METHODS: tuple[BootstrapMethod, ...] = ("percentile", "bca", "basic")


class StatsError(ValueError):
    """Bad input to a statistic (wrong shapes, too few units, unknown method)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval.

    ``level``: the requested confidence level; ``coverage``: the level actually reached when
    it differs (an order-statistic interval of few seeds), else equal to ``level``; ``n``: the
    number of resampled units; ``method``: how the interval was formed.
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str
    coverage: float | None = None

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (both bounds finite)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > 0 or self.high < 0))

    @property
    def width(self) -> float:
        return float(self.high - self.low)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["excludes_zero"] = self.excludes_zero
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _check_level(level: float) -> float:
    if not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise StatsError(f"level: {level!r}; allowed: a number strictly between 0 and 1 (0.95 = 95 %)")
    return float(level)


def _check_method(method: str) -> BootstrapMethod:
    for known in METHODS:
        if method == known:
            return known
    raise StatsError(f"method: {method!r}; allowed: {', '.join(METHODS)}")


def _as_1d(name: str, x: npt.ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise StatsError(f"{name}: expected a 1-D sequence of numbers, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise StatsError(f"{name}: contains NaN or infinite values; drop or impute them first")
    return a


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise StatsError(f"paired inputs differ in length: {lengths}; each must describe the same units in the same order")
    return next(iter(lengths.values()))


def _index_bootstrap(stat_of_idx: Callable[[np.ndarray], float], n: int, *, level: float,
                     n_resamples: int, method: BootstrapMethod, seed: int) -> tuple[float, float, str]:
    """Bootstrap interval of ``stat_of_idx`` by resampling unit indices ``0..n-1``.

    Uses ``scipy.stats.bootstrap`` on the index vector, so several arrays describing the same
    units are resampled jointly. A degenerate bootstrap distribution (every resample gives the
    same value, or BCa cannot be formed) falls back to the percentile interval of the
    distribution scipy computed.
    """
    idx = np.arange(n)

    def stat(i: np.ndarray) -> float:
        return float(stat_of_idx(np.asarray(i, dtype=np.int64)))

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = _st.bootstrap((idx,), stat, vectorized=False, n_resamples=int(n_resamples),
                            confidence_level=level, method=method, random_state=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
        dist = dist[np.isfinite(dist)]
        if len(dist) == 0:
            return math.nan, math.nan, method
        a = (1.0 - level) / 2.0
        low, high = float(np.quantile(dist, a)), float(np.quantile(dist, 1.0 - a))
        return low, high, "percentile (fallback)"
    return low, high, method


def bootstrap_ci(*data: npt.ArrayLike, statistic: Callable[..., float] = np.mean, level: float = 0.95,
                 n_resamples: int = 2000, method: str = "percentile", seed: int = 0) -> Interval:
    """Bootstrap interval of ``statistic(*data)``; several arrays are resampled jointly
    (paired: row ``i`` of every array is one unit). ``method``: percentile, bca or basic."""
    level, method = _check_level(level), _check_method(method)
    if not data:
        raise StatsError("bootstrap_ci: give at least one array")
    arrays = [_as_1d(f"data[{i}]", d) for i, d in enumerate(data)]
    n = _same_length(**{f"data[{i}]": a for i, a in enumerate(arrays)})
    if n < 2:
        raise StatsError(f"bootstrap_ci: {n} unit(s); need at least 2 to resample")
    est = float(statistic(*arrays))
    low, high, used = _index_bootstrap(lambda i: statistic(*(a[i] for a in arrays)), n,
                                       level=level, n_resamples=n_resamples, method=method, seed=seed)
    return Interval(est, low, high, level, n, used, level)


# rank correlations -----------------------------------------------------------------------
def tau_value(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Kendall tau-b of two equally long score lists (ties handled; NaN if one is constant)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return float(_st.kendalltau(a, b, variant="b").statistic)


def spearman_value(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rho of two equally long score lists (NaN if one is constant)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return float(_st.spearmanr(a, b).statistic)


CORRELATIONS: dict[str, Callable[[npt.ArrayLike, npt.ArrayLike], float]] = {
    "kendall": tau_value,
    "spearman": spearman_value,
}


def _correlation(name: str) -> Callable[[npt.ArrayLike, npt.ArrayLike], float]:
    try:
        return CORRELATIONS[name]
    except KeyError:
        raise StatsError(f"correlation: {name!r}; allowed: {', '.join(CORRELATIONS)}") from None


def _rank_ci(kind: str, x: npt.ArrayLike, y: npt.ArrayLike, level: float, n_resamples: int,
             method: str, seed: int) -> Interval:
    f = _correlation(kind)
    level, method = _check_level(level), _check_method(method)
    a, b = _as_1d("x", x), _as_1d("y", y)
    n = _same_length(x=a, y=b)
    if n < 3:
        raise StatsError(f"{kind}: {n} units; a rank correlation needs at least 3")
    est = f(a, b)
    low, high, used = _index_bootstrap(lambda i: f(a[i], b[i]), n, level=level,
                                       n_resamples=n_resamples, method=method, seed=seed)
    return Interval(est, low, high, level, n, used, level)


def kendall_tau(x: npt.ArrayLike, y: npt.ArrayLike, *, level: float = 0.95, n_resamples: int = 2000,
                method: str = "percentile", seed: int = 0) -> Interval:
    """Kendall tau-b of ``x`` and ``y`` (same units, same order) with a bootstrap interval
    over the units (pairs ``(x_i, y_i)`` resampled together)."""
    return _rank_ci("kendall", x, y, level, n_resamples, method, seed)


def spearman(x: npt.ArrayLike, y: npt.ArrayLike, *, level: float = 0.95, n_resamples: int = 2000,
             method: str = "percentile", seed: int = 0) -> Interval:
    """Spearman rho of ``x`` and ``y`` with a bootstrap interval over the units."""
    return _rank_ci("spearman", x, y, level, n_resamples, method, seed)


# paired differences ------------------------------------------------------------------------
def paired_difference(a: npt.ArrayLike, b: npt.ArrayLike, *, reference: npt.ArrayLike | None = None,
                      statistic: str | Callable[..., float] | None = None, level: float = 0.95,
                      n_resamples: int = 2000, method: str = "percentile", seed: int = 0) -> Interval:
    """Paired bootstrap interval of a difference ``S(a) - S(b)`` over the same units.

    Without ``reference``: ``a`` and ``b`` are paired samples (e.g. tau of two methods on the
    same supernet seeds) and ``S`` is ``statistic`` (a callable of one array; default mean).
    With ``reference``: ``S(v) = statistic(reference, v)`` with ``statistic`` a correlation
    name (``kendall`` default, ``spearman``) or a callable of two arrays, e.g.
    ``tau(truth, scores_A) - tau(truth, scores_B)`` on the same architectures. In both cases
    the units (rows) are resampled jointly, so what the two sides share cancels.
    """
    level, method = _check_level(level), _check_method(method)
    av, bv = _as_1d("a", a), _as_1d("b", b)
    if reference is None:
        s = np.mean if statistic is None else statistic
        if isinstance(s, str):
            raise StatsError("statistic: a correlation name needs reference=...; without it give a callable of one array")
        n = _same_length(a=av, b=bv)

        def diff(i: np.ndarray) -> float:
            return float(s(av[i]) - s(bv[i]))
    else:
        rv = _as_1d("reference", reference)
        s2 = _correlation(statistic or "kendall") if statistic is None or isinstance(statistic, str) else statistic
        n = _same_length(a=av, b=bv, reference=rv)

        def diff(i: np.ndarray) -> float:
            return float(s2(rv[i], av[i]) - s2(rv[i], bv[i]))
    if n < 2:
        raise StatsError(f"paired_difference: {n} unit(s); need at least 2")
    est = diff(np.arange(n))
    low, high, used = _index_bootstrap(diff, n, level=level, n_resamples=n_resamples, method=method, seed=seed)
    return Interval(est, low, high, level, n, used, level)


# seeds -------------------------------------------------------------------------------------
def median_ci(values: npt.ArrayLike, *, level: float = 0.95) -> Interval:
    """Median of ``values`` (e.g. one figure per seed) with a distribution-free
    order-statistic interval ``[x_(j), x_(n+1-j)]``: the largest ``j`` whose binomial
    coverage reaches ``level``. With too few values for ``level`` (fewer than 6 for 95 %)
    the interval is ``[min, max]`` and ``coverage`` says what it reaches (0.75 for 3)."""
    level = _check_level(level)
    v = np.sort(_as_1d("values", values))
    n = len(v)
    if n == 0:
        raise StatsError("median_ci: no values")
    med = float(np.median(v))
    if n == 1:
        return Interval(med, med, med, level, 1, "order-statistic", 0.0)
    best_j, best_cov = 1, 1.0 - 2.0 * 0.5**n
    for j in range(1, n // 2 + 1):
        # P(x_(j) <= median <= x_(n+1-j)) = 1 - 2 * P(Binom(n, 1/2) <= j - 1)
        cov = 1.0 - 2.0 * float(_st.binom.cdf(j - 1, n, 0.5))
        if cov >= level:
            best_j, best_cov = j, cov
    return Interval(med, float(v[best_j - 1]), float(v[n - best_j]), level, n, "order-statistic", best_cov)


def seed_to_seed_tau(scores: npt.ArrayLike, *, level: float = 0.95, n_resamples: int = 1000, method: str = "percentile",
                     seed: int = 0) -> Interval:
    """The noise ceiling of a ranking: mean Kendall tau over all pairs of seeds.

    ``scores``: array of shape (architectures, seeds), one standalone result per cell. The
    interval resamples architectures (rows) jointly for every seed pair."""
    m = np.asarray(scores, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2 or m.shape[0] < 3:
        raise StatsError(f"scores: shape {m.shape}; expected (architectures >= 3, seeds >= 2)")
    if not np.all(np.isfinite(m)):
        raise StatsError("scores: contains NaN or infinite values")
    pairs = list(combinations(range(m.shape[1]), 2))

    def mean_tau(i: np.ndarray) -> float:
        return float(np.mean([tau_value(m[i, p], m[i, q]) for p, q in pairs]))

    level, method = _check_level(level), _check_method(method)
    est = mean_tau(np.arange(m.shape[0]))
    low, high, used = _index_bootstrap(mean_tau, m.shape[0], level=level, n_resamples=n_resamples,
                                       method=method, seed=seed)
    return Interval(est, low, high, level, m.shape[0], used, level)
