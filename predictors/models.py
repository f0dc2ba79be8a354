"""Regression models behind the predictors, each with a safe, array-only export.

Every model fits with scikit-learn (or numpy) and then *exports* itself to JSON metadata plus
named numpy arrays; ``predict`` always runs a small numpy re-implementation on those arrays
(linear map, MLP forward pass, tree traversal, table look-up), so a saved and re-loaded
model predicts exactly what the fitted one did, and loading never executes code from a file.
``sk_predict`` keeps scikit-learn's own prediction right after ``fit`` (tests compare them).

Models register in ``MODELS`` by name: ``ridge``, ``gbm``, ``mlp``, ``lut``, ``ensemble``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .errors import PredictorError

Arrays = dict[str, np.ndarray]
MODELS: dict[str, type[Model]] = {}


def register_model(name: str) -> Callable[[type[Model]], type[Model]]:
    def deco(cls: type[Model]) -> type[Model]:
        cls.name = name
        MODELS[name] = cls
        return cls

    return deco


class Model:
    """Base: target transform (``log`` or ``raw``) and feature standardisation."""

    name: ClassVar[str] = ""
    default_target: ClassVar[str] = "log"

    def __init__(self, names: Sequence[str], seed: int = 0, n_encoding: int | None = None,
                 target: str | None = None, **options: Any) -> None:
        self.names = list(names)
        self.n_encoding = len(self.names) if n_encoding is None else n_encoding
        self.seed = int(seed)
        self.target = target or self.default_target
        if self.target not in ("log", "raw"):
            raise PredictorError(f"target transform must be 'log' or 'raw', got {self.target!r}")
        self.options = dict(options)
        self.arrays: Arrays = {}
        self._sk: Any = None

    # target transform ---------------------------------------------------------------
    def _fwd(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.target == "log" else y

    def _inv(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z) if self.target == "log" else z

    # interface ----------------------------------------------------------------------
    def fit(self, F: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def predict(self, F: np.ndarray, return_std: bool = False) -> Any:
        out = self._inv(self._raw_predict(np.asarray(F, dtype=np.float64)))
        return (out, np.zeros_like(out)) if return_std else out

    def _raw_predict(self, F: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sk_predict(self, F: np.ndarray) -> np.ndarray:
        """scikit-learn's own prediction (only right after ``fit``)."""
        if self._sk is None:
            raise PredictorError("sk_predict is only available right after fit")
        return self._inv(self._sk_raw(np.asarray(F, dtype=np.float64)))

    def _sk_raw(self, F: np.ndarray) -> np.ndarray:
        return self._sk.predict(F)

    def export(self) -> tuple[dict[str, Any], Arrays]:
        meta = {"model": self.name, "seed": self.seed, "target": self.target, "options": self.options,
                "n_encoding": self.n_encoding}
        return meta, dict(self.arrays)

    @classmethod
    def restore(cls, names: Sequence[str], meta: Mapping[str, Any], arrays: Arrays) -> Model:
        m = cls(names, seed=meta.get("seed", 0), n_encoding=meta.get("n_encoding"),
                target=meta.get("target"), **dict(meta.get("options") or {}))
        m.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        m._check_arrays()
        return m

    expected_arrays: ClassVar[tuple[str, ...]] = ()

    def _check_arrays(self) -> None:
        for k in self.expected_arrays:
            if k not in self.arrays:
                raise PredictorError(f"predictor file: model {self.name!r} lacks array {k!r}")


def _standardise(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = F.mean(axis=0)
    std = F.std(axis=0)
    std[std < 1e-12] = 1.0
    return mean, std


@register_model("ridge")
class RidgeModel(Model):
    """Ridge regression on standardised features (log-features of costs added), alpha by CV."""

    expected_arrays = ("coef", "intercept", "mean", "std")
    default_target = "raw"

    def fit(self, F: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import RidgeCV

        mean, std = _standardise(F)
        Z = (F - mean) / std
        self._sk = RidgeCV(alphas=np.logspace(-4, 3, 15)).fit(Z, self._fwd(y))
        self.arrays = {"coef": self._sk.coef_.astype(np.float64) / std,
                       "intercept": np.array([self._sk.intercept_ - np.dot(self._sk.coef_ / std, mean)]),
                       "mean": mean, "std": std}
        self._mean, self._std = mean, std

    def _sk_raw(self, F: np.ndarray) -> np.ndarray:
        return self._sk.predict((F - self._mean) / self._std)

    def _check_arrays(self) -> None:
        super()._check_arrays()
        a, n = self.arrays, len(self.names)
        if a["coef"].shape != (n,) or a["intercept"].size != 1:
            raise PredictorError(f"predictor file: ridge coefficients have shape {a['coef'].shape}, expected ({n},)")

    def _raw_predict(self, F: np.ndarray) -> np.ndarray:
        return F @ self.arrays["coef"] + self.arrays["intercept"][0]


@register_model("mlp")
class MLPModel(Model):
    """The HAT latency predictor: 3 hidden layers of 400 ReLU units, standardised inputs and
    target, Adam (scikit-learn ``MLPRegressor``)."""

    def fit(self, F: np.ndarray, y: np.ndarray) -> None:
        from sklearn.neural_network import MLPRegressor

        hidden = tuple(self.options.get("hidden", (400, 400, 400)))
        mean, std = _standardise(F)
        z = self._fwd(y)
        ym, ys = float(z.mean()), float(z.std() or 1.0)
        self._sk = MLPRegressor(hidden_layer_sizes=hidden, learning_rate_init=self.options.get("lr", 1e-3),
                                max_iter=int(self.options.get("epochs", 80)), batch_size=min(128, len(y)),
                                alpha=self.options.get("alpha", 1.0), random_state=self.seed,
                                tol=1e-6, n_iter_no_change=30)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._sk.fit((F - mean) / std, (z - ym) / ys)
        self.arrays = {"mean": mean, "std": std, "y_scale": np.array([ym, ys])}
        for i, (w, b) in enumerate(zip(self._sk.coefs_, self._sk.intercepts_)):
            self.arrays[f"w{i}"] = w.astype(np.float64)
            self.arrays[f"b{i}"] = b.astype(np.float64)
        self._fit_stats = (mean, std, ym, ys)

    def _sk_raw(self, F: np.ndarray) -> np.ndarray:
        mean, std, ym, ys = self._fit_stats
        return self._sk.predict((F - mean) / std) * ys + ym

    def _check_arrays(self) -> None:
        for k in ("mean", "std", "y_scale", "w0", "b0"):
            if k not in self.arrays:
                raise PredictorError(f"predictor file: model 'mlp' lacks array {k!r}")
        a = self.arrays
        width = len(self.names)
        n = sum(1 for k in a if k.startswith("w"))
        for i in range(n):
            w, b = a.get(f"w{i}"), a.get(f"b{i}")
            if w is None or b is None or w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise PredictorError(f"predictor file: MLP layer {i} has inconsistent weight shapes")
            width = w.shape[1]
        if width != 1 or a["mean"].shape != (len(self.names),) or a["std"].shape != (len(self.names),):
            raise PredictorError("predictor file: MLP shapes do not match its features")

    def _raw_predict(self, F: np.ndarray) -> np.ndarray:
        a = self.arrays
        h = (F - a["mean"]) / a["std"]
        n = sum(1 for k in a if k.startswith("w"))
        for i in range(n):
            h = h @ a[f"w{i}"] + a[f"b{i}"]
            if i < n - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0] * a["y_scale"][1] + a["y_scale"][0]


@register_model("gbm")
class GBMModel(Model):
    """Histogram gradient boosting (scikit-learn) on the residual of a ridge fit (the ratio
    to it with the log target, option ``base="ridge"``; ``base="none"`` boosts from a
    constant). Trees are exported as flat node arrays, the ridge base as its coefficients."""

    expected_arrays = ("feature", "threshold", "left", "right", "leaf", "value", "missing_left",
                       "roots", "baseline", "depth")

    def _base_model(self) -> RidgeModel | None:
        if self.options.get("base", "ridge") == "none":
            return None
        return RidgeModel(self.names, seed=self.seed, n_encoding=self.n_encoding, target="raw")

    def _base(self, F: np.ndarray, sk: bool = False) -> np.ndarray:
        if self.base is None:
            return np.zeros(F.shape[0]) if self.target == "raw" else np.ones(F.shape[0])
        b = self.base.sk_predict(F) if sk else self.base.predict(F)
        if self.target == "log":
            b = np.maximum(b, self.arrays["base_floor"][0])
        return b

    def _combine(self, base: np.ndarray, raw: np.ndarray) -> np.ndarray:
        return base * np.exp(raw) if self.target == "log" else base + raw

    def fit(self, F: np.ndarray, y: np.ndarray) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        self.base = self._base_model()
        if self.base is not None:
            self.base.fit(F, y)
        floor = np.array([0.1 * float(np.min(np.abs(y))) or 1e-9])
        self.arrays = {"base_floor": floor}
        base = self._base(F)
        z = np.log(y / base) if self.target == "log" else y - base
        min_leaf = int(self.options.get("min_leaf", min(20, max(2, len(y) // 40))))
        self._sk = HistGradientBoostingRegressor(
            max_iter=int(self.options.get("trees", 300)), learning_rate=self.options.get("lr", 0.03),
            max_leaf_nodes=int(self.options.get("leaves", 7)), min_samples_leaf=min_leaf,
            l2_regularization=1e-3, early_stopping=False, random_state=self.seed,
        ).fit(F, z)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right",
                                                               "leaf", "value", "missing_left")}
        roots, offset, depth = [], 0, 0
        for (tree,) in self._sk._predictors:
            nodes = tree.nodes
            if nodes["is_categorical"].any():  # pragma: no cover - no categorical features are passed
                raise PredictorError("categorical splits cannot be exported")
            roots.append(offset)
            parts["feature"].append(nodes["feature_idx"].astype(np.int64))
            parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
            parts["left"].append(nodes["left"].astype(np.int64) + offset)
            parts["right"].append(nodes["right"].astype(np.int64) + offset)
            parts["leaf"].append(nodes["is_leaf"].astype(np.uint8))
            parts["value"].append(nodes["value"].astype(np.float64))
            parts["missing_left"].append(nodes["missing_go_to_left"].astype(np.uint8))
            depth = max(depth, int(nodes["depth"].max()))
            offset += len(nodes)
        self.arrays.update({k: np.concatenate(v) for k, v in parts.items()})
        self.arrays["roots"] = np.asarray(roots, dtype=np.int64)
        self.arrays["baseline"] = np.asarray(self._sk._baseline_prediction, dtype=np.float64).reshape(-1)[:1]
        self.arrays["depth"] = np.array([depth], dtype=np.int64)
        if self.base is not None:
            self.arrays.update({f"base.{k}": v for k, v in self.base.arrays.items()})

    def predict(self, F: np.ndarray, return_std: bool = False) -> Any:
        F = np.asarray(F, dtype=np.float64)
        out = self._combine(self._base(F), self._raw_predict(F))
        return (out, np.zeros_like(out)) if return_std else out

    def sk_predict(self, F: np.ndarray) -> np.ndarray:
        if self._sk is None:
            raise PredictorError("sk_predict is only available right after fit")
        F = np.asarray(F, dtype=np.float64)
        return self._combine(self._base(F, sk=True), self._sk.predict(F))

    def _check_arrays(self) -> None:
        super()._check_arrays()
        a = self.arrays
        n_nodes = a["value"].size
        same = all(a[k].shape == (n_nodes,) for k in ("feature", "threshold", "left", "right", "leaf", "missing_left"))
        inner = ~a["leaf"].astype(bool)
        if (not same or (a["roots"] >= n_nodes).any() or (a["roots"] < 0).any()
                or (a["feature"][inner] >= len(self.names)).any() or (a["feature"][inner] < 0).any()
                or (a["left"][inner] >= n_nodes).any() or (a["right"][inner] >= n_nodes).any()
                or (a["left"][inner] < 0).any() or (a["right"][inner] < 0).any()
                or a["depth"].size != 1 or not 0 <= int(a["depth"][0]) <= 64):
            raise PredictorError("predictor file: gradient-boosting tree arrays are inconsistent")
        # leaves point at themselves so traversal never leaves the arrays
        a["feature"] = np.where(inner, a["feature"], 0)
        self.base = self._base_model()
        if self.base is not None:
            self.base.arrays = {k[5:]: v for k, v in self.arrays.items() if k.startswith("base.")}
            self.base._check_arrays()
            if "base_floor" not in self.arrays:
                raise PredictorError("predictor file: model 'gbm' lacks array 'base_floor'")

    def _raw_predict(self, F: np.ndarray) -> np.ndarray:
        a = self.arrays
        n = F.shape[0]
        node = np.broadcast_to(a["roots"], (n, a["roots"].size)).copy()
        rows = np.arange(n)[:, None]
        leaf = a["leaf"].astype(bool)
        for _ in range(int(a["depth"][0])):
            x = F[rows, a["feature"][node]]
            go_left = np.where(np.isnan(x), a["missing_left"][node] == 1, x <= a["threshold"][node])
            step = np.where(go_left, a["left"][node], a["right"][node])
            node = np.where(leaf[node], node, step)
        return a["value"][node].sum(axis=1) + a["baseline"][0]


@register_model("ensemble")
class EnsembleModel(Model):
    """Mean of ridge, gradient boosting and MLP; their spread (std, in ms) is the uncertainty."""

    members_default: ClassVar[tuple[str, ...]] = ("ridge", "gbm", "mlp")

    def __init__(self, names: Sequence[str], seed: int = 0, n_encoding: int | None = None,
                 target: str | None = None, **options: Any) -> None:
        super().__init__(names, seed, n_encoding, target, **options)
        self.member_names = list(options.get("members", self.members_default))
        for m in self.member_names:
            if m not in MODELS or m == "ensemble":
                raise PredictorError(f"unknown ensemble member {m!r}; allowed: ridge, gbm, mlp, lut")
        self.members: list[Model] = []

    def fit(self, F: np.ndarray, y: np.ndarray, layer_ms: Any = None) -> None:
        self.members = []
        for i, m in enumerate(self.member_names):
            opts = dict(dict(self.options.get("member_options") or {}).get(m) or {})
            if m == "lut" and "exclude" in self.options:
                opts.setdefault("exclude", self.options["exclude"])
            model = MODELS[m](self.names, seed=self.seed + i, n_encoding=self.n_encoding, **opts)
            if m == "lut" and layer_ms is not None:
                model.fit(F, y, layer_ms=layer_ms)  # type: ignore[call-arg]
            else:
                model.fit(F, y)
            self.members.append(model)
        self._sk = True

    def predict(self, F: np.ndarray, return_std: bool = False) -> Any:
        preds = np.stack([m.predict(F) for m in self.members])
        mean = preds.mean(axis=0)
        return (mean, preds.std(axis=0)) if return_std else mean

    def sk_predict(self, F: np.ndarray) -> np.ndarray:
        return np.stack([m.sk_predict(F) for m in self.members]).mean(axis=0)

    def export(self) -> tuple[dict[str, Any], Arrays]:
        meta, arrays = super().export()
        meta["members"] = []
        for i, m in enumerate(self.members):
            mm, ma = m.export()
            meta["members"].append(mm)
            arrays.update({f"m{i}.{k}": v for k, v in ma.items()})
        return meta, arrays

    @classmethod
    def restore(cls, names: Sequence[str], meta: Mapping[str, Any], arrays: Arrays) -> Model:
        m = cls(names, seed=meta.get("seed", 0), n_encoding=meta.get("n_encoding"),
                target=meta.get("target"), **dict(meta.get("options") or {}))
        members = meta.get("members")
        if not isinstance(members, list) or not members:
            raise PredictorError("predictor file: ensemble without members")
        for i, mm in enumerate(members):
            kind = mm.get("model") if isinstance(mm, Mapping) else None
            if kind not in MODELS or kind == "ensemble":
                raise PredictorError(f"predictor file: unknown ensemble member model {kind!r}")
            prefix = f"m{i}."
            sub = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            m.members.append(MODELS[kind].restore(names, mm, sub))
        m.member_names = [mm["model"] for mm in members]
        return m


def make_model(name: str, names: Sequence[str], seed: int = 0, n_encoding: int | None = None,
               **options: Any) -> Model:
    """A fresh model from the registry (``PredictorError`` for an unknown name)."""
    if name not in MODELS:
        raise PredictorError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    return MODELS[name](names, seed=seed, n_encoding=n_encoding, **options)
