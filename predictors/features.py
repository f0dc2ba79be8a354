"""Turn predictor inputs into a feature matrix: space encoding plus analytic cost features.

Two input modes:

- with a space: a list of ``Arch`` (or mappings, or JSON text, or a DataFrame with an
  ``arch`` column); each is validated, encoded with ``space.encode`` (raw values) and
  extended by the space's cost model (per-layer MACs and parameters, see ``costs``);
- without a space: a DataFrame of numeric feature columns (or a 2-D array); the columns
  seen in ``fit`` are required, in any order, at ``predict``; a known flat layout (the HAT
  CSV columns) gets its cost model too.

A user-supplied ``cost_fn`` adds columns: ``cost_fn(arch) -> {name: float}`` with a space,
``cost_fn(DataFrame) -> DataFrame`` without one. It is code, so it is not saved: ``load``
needs it passed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from archlab.spaces import Arch, PerLayer, SearchSpace, SpaceError

from .costs import COST_MODELS, cost_features, find_cost_model
from .errors import PredictorError


def _frame_type() -> Any:
    import pandas as pd

    return pd.DataFrame


def is_frame(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _default_head_dim(space: SearchSpace) -> int:
    """archlab's ``TransformerLM`` rule: max d_model // max heads per layer (0 if unknown)."""
    try:
        d = max(space.params["d_model"].values())
        layers = space.params["layers"]
        if not isinstance(layers, PerLayer):
            return 0
        h = max(layers.params["n_head"].values())
        return max(1, int(d) // int(h))
    except (KeyError, AttributeError, TypeError, ValueError):
        return 0


class Featurizer:
    """Maps inputs to a float64 matrix with names ``self.names``; ``self.n_encoding`` leading
    columns are the raw encoding (or the input columns), the rest derived cost features."""

    def __init__(self, space: SearchSpace | None = None, cost: str | None = "auto",
                 cost_options: Mapping[str, Any] | None = None,
                 cost_fn: Callable[..., Any] | None = None) -> None:
        if cost not in (None, "auto", "none") and cost not in COST_MODELS:
            raise PredictorError(f"unknown cost model {cost!r}; allowed: auto, none, {', '.join(COST_MODELS)}")
        self.space = space
        self.cost_request = cost
        self.cost_options = dict(cost_options or {})
        self.cost_fn = cost_fn
        self.input_names: list[str] = list(space.feature_names()) if space is not None else []
        self.cost: str | None = None
        self.custom_names: list[str] = []
        self.names: list[str] = []
        self.fitted = False

    # set-up -----------------------------------------------------------------------
    def fit(self, X: Any) -> np.ndarray:
        """Fix the input columns and cost model from ``X``; returns ``transform(X)``."""
        if self.space is None:
            frame = self._as_frame(X, fitting=True)
            self.input_names = [str(c) for c in frame.columns]
        if self.cost_request in (None, "none"):
            self.cost = None
        elif self.cost_request == "auto":
            self.cost = find_cost_model(self.input_names)
        else:
            self.cost = self.cost_request
            if not COST_MODELS[self.cost].matches(self.input_names):
                raise PredictorError(f"cost model {self.cost!r} needs features {COST_MODELS[self.cost].requires}")
        if self.cost == "transformer_lm" and self.space is not None and "head_dim" not in self.cost_options:
            self.cost_options["head_dim"] = _default_head_dim(self.space)
        self.fitted = True
        self.custom_names = []
        base, custom = self._raw(X)
        self.custom_names = list(custom[0])
        cost_names = cost_features(self.cost, base[:1], self.input_names, self.cost_options)[0] if self.cost else []
        self.names = self.input_names + cost_names + self.custom_names
        return self._assemble(base, custom[1])

    @property
    def n_encoding(self) -> int:
        return len(self.input_names)

    def transform(self, X: Any) -> np.ndarray:
        """Feature matrix ``(n, len(names))`` (float64) of ``X``."""
        if not self.fitted:
            raise PredictorError("the predictor is not fitted yet; call fit(X, y) first")
        base, custom = self._raw(X)
        if list(custom[0]) != self.custom_names:
            raise PredictorError(f"cost_fn returned columns {custom[0]}, expected {self.custom_names}")
        return self._assemble(base, custom[1])

    def _assemble(self, base: np.ndarray, custom: np.ndarray) -> np.ndarray:
        parts = [base]
        if self.cost:
            parts.append(cost_features(self.cost, base, self.input_names, self.cost_options)[1])
        if custom.shape[1]:
            parts.append(custom)
        out = np.concatenate(parts, axis=1) if len(parts) > 1 else base
        return np.ascontiguousarray(out, dtype=np.float64)

    # inputs -----------------------------------------------------------------------
    def archs(self, X: Any) -> list[Arch]:
        """Validate every architecture of ``X`` against the space (errors name the row)."""
        assert self.space is not None
        if is_frame(X):
            if "arch" not in X.columns:
                raise PredictorError("with a space, a DataFrame needs an 'arch' column of architecture JSON")
            X = list(X["arch"])
        if isinstance(X, (Mapping, str)):
            raise PredictorError("X must be a list of architectures, not a single one")
        out = []
        for i, a in enumerate(X):
            try:
                out.append(self.space.validate(a, check_constraints=False))
            except SpaceError as exc:
                raise PredictorError(f"row {i}: not an architecture of space {self.space.name!r}: {exc}") from None
        if not out:
            raise PredictorError("X is empty")
        return out

    def _raw(self, X: Any) -> tuple[np.ndarray, tuple[list[str], np.ndarray]]:
        if self.space is not None:
            archs = self.archs(X)
            base = self.space.encode_many(archs).astype(np.float64)
            custom = self._custom_archs(archs)
        else:
            frame = self._as_frame(X)
            base = frame[self.input_names].to_numpy(dtype=np.float64) if self.fitted else frame.to_numpy(np.float64)
            custom = self._custom_frame(frame)
        return base, custom

    def _as_frame(self, X: Any, fitting: bool = False) -> Any:
        DataFrame = _frame_type()
        if isinstance(X, np.ndarray) or (isinstance(X, list) and X and isinstance(X[0], (list, tuple, np.ndarray))):
            arr = np.asarray(X, dtype=np.float64)
            if arr.ndim != 2:
                raise PredictorError(f"X must be 2-D (rows x features), got shape {arr.shape}")
            names = self.input_names if (self.input_names and not fitting) else [f"x{j}" for j in range(arr.shape[1])]
            if arr.shape[1] != len(names):
                raise PredictorError(f"X has {arr.shape[1]} columns, the predictor was fitted on {len(names)}")
            X = DataFrame(arr, columns=names)
        if not is_frame(X):
            raise PredictorError(
                f"without a space, X must be a DataFrame of numeric feature columns, got {type(X).__name__}; "
                "pass space=... to fit on architectures")
        if len(X) == 0:
            raise PredictorError("X is empty")
        cols = self.input_names if (self.fitted and not fitting) else list(X.columns)
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise PredictorError(f"missing feature column {missing[0]!r} (the predictor was fitted on {len(cols)} columns)")
        for c in cols:
            kind = getattr(X[c].dtype, "kind", "O")
            if kind not in "biuf":
                raise PredictorError(f"feature column {c!r} is not numeric (dtype {X[c].dtype})")
            bad = np.flatnonzero(~np.isfinite(X[c].to_numpy(dtype=np.float64)))
            if bad.size:
                raise PredictorError(f"feature column {c!r}: row {int(bad[0])} is NaN or infinite")
        return X

    def _custom_archs(self, archs: Sequence[Arch]) -> tuple[list[str], np.ndarray]:
        if self.cost_fn is None:
            return [], np.zeros((len(archs), 0))
        rows = [dict(self.cost_fn(a)) for a in archs]
        names = sorted(rows[0])
        return [f"custom.{n}" for n in names], np.asarray([[float(r[n]) for n in names] for r in rows])

    def _custom_frame(self, frame: Any) -> tuple[list[str], np.ndarray]:
        if self.cost_fn is None:
            return [], np.zeros((len(frame), 0))
        extra = self.cost_fn(frame)
        if not is_frame(extra) or len(extra) != len(frame):
            raise PredictorError("cost_fn must return a DataFrame with one row per input row")
        return [f"custom.{c}" for c in extra.columns], extra.to_numpy(dtype=np.float64)

    # persistence ------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space.to_json() if self.space is not None else None,
            "input_names": self.input_names,
            "cost": self.cost,
            "cost_options": self.cost_options,
            "custom_names": self.custom_names,
            "names": self.names,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], cost_fn: Callable[..., Any] | None = None) -> Featurizer:
        space = SearchSpace.from_json(d["space"]) if d.get("space") else None
        f = cls(space, cost=d.get("cost") or "none", cost_options=d.get("cost_options"), cost_fn=cost_fn)
        f.input_names = [str(x) for x in d["input_names"]]
        f.cost = d.get("cost")
        f.custom_names = [str(x) for x in d.get("custom_names", [])]
        f.names = [str(x) for x in d["names"]]
        if f.custom_names and cost_fn is None:
            raise PredictorError(
                f"this predictor was fitted with a custom cost_fn ({len(f.custom_names)} columns); "
                "pass the same cost_fn= to load()")
        if space is not None and f.input_names != space.feature_names():
            raise PredictorError("predictor file: feature names do not match its search space")
        f.fitted = True
        return f
