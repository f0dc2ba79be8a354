"""archlab.predictors: latency profiling, latency and accuracy predictors, safe files.

``LatencyPredictor`` / ``AccuracyPredictor`` (models: ridge, gbm, mlp, lut, ensemble),
``score`` (rmse, mape, kendall_tau, spearman, within_5, within_10), ``load_measurements``
(bring your own CSV/parquet). Profiling (``archlab.predictors.profiling``) imports torch
lazily, so importing this package does not.
"""

from __future__ import annotations

from . import lut  # noqa: F401  (registers the "lut" model next to those of .models)
from .data import load_measurements
from .errors import PredictorError, ProfilingError
from .metrics import SCORE_KEYS, score
from .predictor import MODEL_NAMES, AccuracyPredictor, LatencyPredictor

__all__ = [
    "MODEL_NAMES",
    "SCORE_KEYS",
    "AccuracyPredictor",
    "LatencyPredictor",
    "PredictorError",
    "ProfilingError",
    "load_measurements",
    "score",
]
