"""Scores of a predictor: errors in ms, relative errors and rank agreement."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import PredictorError

SCORE_KEYS = ("rmse", "mape", "kendall_tau", "spearman", "within_5", "within_10")


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise PredictorError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size < 2:
        raise PredictorError(f"scoring needs at least 2 values, got {t.size}")
    return t, p


def kendall_tau(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Kendall's tau-b between measured and predicted values (1 = same ranking)."""
    from scipy.stats import kendalltau

    t, p = _pair(y_true, y_pred)
    tau = kendalltau(t, p).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def spearman(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Spearman's rank correlation between measured and predicted values."""
    from scipy.stats import spearmanr

    t, p = _pair(y_true, y_pred)
    rho = spearmanr(t, p).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def score(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """``rmse`` (units of y, ms for latency), ``mape`` (percent), ``kendall_tau``, ``spearman``,
    ``within_5`` / ``within_10`` (share, 0..1, of predictions within +-5% / +-10% of the truth).

    Relative errors divide by ``|y_true|``; rows with ``y_true == 0`` are left out of them.
    """
    t, p = _pair(y_true, y_pred)
    err = p - t
    nz = t != 0
    rel = np.abs(err[nz]) / np.abs(t[nz]) if nz.any() else np.array([np.nan])
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(100.0 * np.mean(rel)),
        "kendall_tau": kendall_tau(t, p),
        "spearman": spearman(t, p),
        "within_5": float(np.mean(rel <= 0.05 + 1e-9)),
        "within_10": float(np.mean(rel <= 0.10 + 1e-9)),
    }
