"""``LatencyPredictor`` and ``AccuracyPredictor``: featurizer + model + scores + safe files."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, overload

import numpy as np
import numpy.typing as npt

from archlab.spaces import PerLayer, SearchSpace

from . import persistence
from .errors import PredictorError
from .features import Featurizer
from .metrics import score as _score
from .models import MODELS, Model, make_model

if TYPE_CHECKING:
    import pandas as pd

    from archlab.spaces import Arch

# what fit / predict / score take: architectures (``Arch``, dicts or their JSON text) when the
# predictor has a space, else a DataFrame or 2-D array of numeric feature columns
Inputs: TypeAlias = "Sequence[Arch | Mapping[str, Any] | str] | pd.DataFrame | npt.ArrayLike"

MODEL_NAMES = ("ridge", "gbm", "mlp", "lut", "ensemble")


def _count_names(space: SearchSpace | None) -> list[str]:
    """Top-level parameters that set a per-layer block's depth (not widths)."""
    if space is None:
        return []
    return sorted({p.count for p in space.params.values()
                   if isinstance(p, PerLayer) and isinstance(p.count, str)})


class _Predictor:
    """Shared machinery; subclasses fix ``kind``, the unit and the target checks."""

    kind: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    positive: ClassVar[bool] = False
    force_target: ClassVar[str | None] = None

    def __init__(self, space: SearchSpace | None = None, model: str = "gbm", *, seed: int = 0,
                 cost: str | None = "auto", cost_options: Mapping[str, Any] | None = None,
                 cost_fn: Callable[..., Any] | None = None,
                 model_options: Mapping[str, Any] | None = None) -> None:
        from . import lut  # noqa: F401

        if model not in MODELS:
            raise PredictorError(f"unknown model {model!r}; allowed: {', '.join(MODEL_NAMES)}")
        if space is not None and not isinstance(space, SearchSpace):
            raise PredictorError(f"space must be a SearchSpace or None, got {type(space).__name__}")
        self.space = space
        self.model_name = model
        self.seed = int(seed)
        self.model_options = dict(model_options or {})
        self.featurizer = Featurizer(space, cost=cost, cost_options=cost_options, cost_fn=cost_fn)
        self.model: Model | None = None
        self.scores: dict[str, float] | None = None
        self.holdout: dict[str, list[float]] | None = None
        self.info: dict[str, Any] = {}
        self.n_train = 0

    # targets ----------------------------------------------------------------------
    def _targets(self, y: npt.ArrayLike, n: int) -> np.ndarray:
        try:
            arr = np.asarray(y, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise PredictorError(f"{self.kind} values must be numbers") from None
        if arr.size != n:
            raise PredictorError(f"X has {n} rows but y has {arr.size} values")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise PredictorError(f"y: row {int(bad[0])} is NaN or infinite ({bad.size} such rows)")
        if self.positive:
            bad = np.flatnonzero(arr <= 0)
            if bad.size:
                raise PredictorError(
                    f"y: row {int(bad[0])} has {self.kind} {arr[bad[0]]:g} {self.unit}; values must be > 0")
        return arr

    # API --------------------------------------------------------------------------
    def fit(self, X: Inputs, y: npt.ArrayLike, holdout: float = 0.0,
            layer_ms: Sequence[Sequence[float] | None] | None = None) -> _Predictor:
        """Fit on architectures (space given) or feature columns; ``y`` in ``self.unit``.

        With ``holdout`` in (0, 1) that share of rows (seeded) is kept out and scored, and the
        scores and holdout predictions travel with the saved file. ``layer_ms`` (per row, the
        ms of each layer, from profiling's ``layer_ms`` column) builds the ``lut`` model from
        per-layer timings; other models ignore it.
        """
        F = self.featurizer.fit(X)
        y_arr = self._targets(y, F.shape[0])
        test = np.zeros(F.shape[0], dtype=bool)
        if holdout:
            if not 0 < holdout < 1:
                raise PredictorError(f"holdout must be a share in (0, 1), got {holdout}")
            rng = np.random.default_rng(self.seed)
            n_test = max(2, round(holdout * F.shape[0]))
            test[rng.permutation(F.shape[0])[:n_test]] = True
        if (~test).sum() < 2:
            raise PredictorError(f"need at least 2 training rows, got {(~test).sum()}")
        options = dict(self.model_options)
        if self.force_target:
            options.setdefault("target", self.force_target)
        if self.model_name == "lut":
            options.setdefault("exclude", _count_names(self.space))
        self.model = make_model(self.model_name, self.featurizer.names, seed=self.seed,
                                n_encoding=self.featurizer.n_encoding, **options)
        if layer_ms is not None and self.model_name in ("lut", "ensemble"):
            if len(layer_ms) != F.shape[0]:
                raise PredictorError(f"layer_ms has {len(layer_ms)} rows, X has {F.shape[0]}")
            train_ms = [lm for lm, t in zip(layer_ms, test) if not t]
            self.model.fit(F[~test], y_arr[~test], layer_ms=train_ms)  # type: ignore[call-arg]
        else:
            self.model.fit(F[~test], y_arr[~test])
        self.n_train = int((~test).sum())
        if test.any():
            self._record(y_arr[test], self.model.predict(F[test]))
        return self

    def _record(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        self.scores = _score(y_true, y_pred)
        self.holdout = {"y_true": [float(v) for v in y_true], "y_pred": [float(v) for v in y_pred]}
        return self.scores

    def _require_fit(self) -> Model:
        if self.model is None:
            raise PredictorError(f"this {type(self).__name__} is not fitted; call fit(X, y) first")
        return self.model

    @overload
    def predict(self, X: Inputs, return_std: Literal[False] = False) -> np.ndarray: ...
    @overload
    def predict(self, X: Inputs, return_std: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...
    def predict(self, X: Inputs, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predictions (``self.unit``) for every row of ``X``, vectorised. With ``return_std``
        also a per-row uncertainty (ensemble: spread of its members; other models: zeros)."""
        model = self._require_fit()
        return model.predict(self.featurizer.transform(X), return_std=return_std)

    def score(self, X: Inputs, y: npt.ArrayLike) -> dict[str, float]:
        """``rmse`` (unit), ``mape`` (%), ``kendall_tau``, ``spearman``, ``within_5``, ``within_10``
        (shares). The result and the predictions are kept as the file's holdout."""
        model = self._require_fit()
        F = self.featurizer.transform(X)
        y_arr = self._targets(y, F.shape[0])
        return self._record(y_arr, model.predict(F))

    # persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.json) and its ``.safetensors`` arrays, atomically."""
        model = self._require_fit()
        meta, arrays = model.export()
        import archlab

        doc = {
            "kind": self.kind, "unit": self.unit, "archlab_version": archlab.__version__,
            "model": meta, "features": self.featurizer.to_json(), "n_train": self.n_train,
            "scores": self.scores, "holdout": self.holdout, "info": self.info,
        }
        return persistence.write(path, doc, arrays)

    @classmethod
    def load(cls, path: str | Path, cost_fn: Callable[..., Any] | None = None) -> _Predictor:
        """Read a file written by ``save`` (safe: JSON + safetensors, verified checksums)."""
        from . import lut  # noqa: F401

        doc, arrays = persistence.read(path, cls.kind)
        try:
            feat = Featurizer.from_json(doc["features"], cost_fn=cost_fn)
            meta = doc["model"]
            name = meta["model"]
            if name not in MODELS:
                raise PredictorError(f"{path}: unknown model {name!r}")
            model = MODELS[name].restore(feat.names, meta, arrays)
        except PredictorError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PredictorError(f"{path}: malformed predictor file ({type(exc).__name__}: {exc})") from None
        self = cls(feat.space, name, seed=int(meta.get("seed", 0)))
        self.featurizer = feat
        self.model = model
        self.scores = doc.get("scores")
        self.holdout = doc.get("holdout")
        self.info = dict(doc.get("info") or {})
        self.n_train = int(doc.get("n_train") or 0)
        return self

    def __repr__(self) -> str:
        state = f"fitted on {self.n_train}" if self.model is not None else "unfitted"
        space = self.space.name if self.space is not None else "features"
        return f"{type(self).__name__}(space={space!r}, model={self.model_name!r}, {state})"


class LatencyPredictor(_Predictor):
    """Predicts latency (ms) of architectures or feature rows.

    >>> p = LatencyPredictor(space, model="gbm").fit(archs, latencies_ms)
    >>> p.predict(more_archs); p.score(test_archs, test_ms)["mape"]
    """

    kind = "latency"
    unit = "ms"
    positive = True


class AccuracyPredictor(_Predictor):
    """Predicts a quality metric (accuracy, loss, ...) of architectures from supernet
    evaluations; judge it by ``score(...)["kendall_tau"]`` (ranking is what search needs)."""

    kind = "accuracy"
    unit = "metric"
    force_target = "raw"
