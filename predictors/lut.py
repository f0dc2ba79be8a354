"""Per-layer additive lookup table (as in Once-for-All and nn-Meter).

Latency = base(global config) + sum over present layers of table[layer type, layer config].
A layer is one slot of a per-layer block of the encoding (``layers.3.*``); its key is the
block name (outer slot indices kept, e.g. ``stages.2.blocks``), the values of the space's
top-level width parameters (``d_model``) and the layer's own values. The entries are ms.

Entries are either fitted from end-to-end measurements (non-negative least squares with a
small ridge penalty, so each measured architecture contributes to the layers it contains)
or set from per-layer timings with ``set_entries``. An unseen key falls back to the mean
entry of its layer type. Without per-layer slots (plain feature columns) the table is
additive over binned columns instead (one entry per column and bin).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import PredictorError
from .models import Arrays, Model, register_model

_SLOT = re.compile(r"^(.*)\.(\d+)\.([^.]+)$")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6g}"


@register_model("lut")
class LookupTableModel(Model):
    default_target = "raw"
    expected_arrays = ("values",)

    def __init__(self, names: Sequence[str], seed: int = 0, n_encoding: int | None = None,
                 target: str | None = None, **options: Any) -> None:
        super().__init__(names, seed, n_encoding, target, **options)
        enc = self.names[: self.n_encoding]
        exclude = set(options.get("exclude", ()))
        self.slots: dict[tuple[str, int], dict[str, int]] = {}
        self.context: dict[str, int] = {}
        for j, name in enumerate(enc):
            m = _SLOT.match(name)
            if m:
                self.slots.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = j
            elif name not in exclude:
                self.context[name] = j
        self.keys: list[str] = []
        self.type_mean: dict[str, float] = {}
        self.bins: dict[str, list[float]] = {}

    # keys ---------------------------------------------------------------------------
    @property
    def layered(self) -> bool:
        return bool(self.slots)

    def row_keys(self, F: np.ndarray) -> list[list[str]]:
        """The table keys each row uses (``base|...`` first)."""
        if not self.layered:
            return self._bin_keys(F)
        ctx_names = sorted(self.context)
        out = []
        for row in F:
            ctx = ",".join(f"{c}={_fmt(row[self.context[c]])}" for c in ctx_names)
            keys = [f"base|{ctx}"]
            for (prefix, _i), fields in self.slots.items():
                if "present" in fields and row[fields["present"]] < 0.5:
                    continue
                own = ",".join(f"{f}={_fmt(row[j])}" for f, j in sorted(fields.items()) if f != "present")
                keys.append(f"{prefix}|{ctx}|{own}")
            out.append(keys)
        return out

    def _bin_keys(self, F: np.ndarray) -> list[list[str]]:
        cols = self.names[: self.n_encoding]
        if not self.bins:
            for j, c in enumerate(cols):
                vals = np.unique(F[:, j])
                if len(vals) <= 12:
                    edges = ((vals[1:] + vals[:-1]) / 2).tolist()
                else:
                    edges = np.unique(np.quantile(F[:, j], np.linspace(0, 1, 9)[1:-1])).tolist()
                self.bins[c] = [float(e) for e in edges]
        idx = [np.searchsorted(np.asarray(self.bins[c]), F[:, j], side="right") for j, c in enumerate(cols)]
        return [["base"] + [f"{c}|{int(idx[j][r])}" for j, c in enumerate(cols)] for r in range(F.shape[0])]

    # fit / predict ------------------------------------------------------------------
    def fit(self, F: np.ndarray, y: np.ndarray, layer_ms: Sequence[Sequence[float] | None] | None = None) -> None:
        """Fit from end-to-end latencies, or, when ``layer_ms`` (per row: ms of each present
        layer, in slot order) is given, build the table from those per-layer timings: each
        layer key gets the median of its timings, each base key the median of the total
        minus the layers."""
        from scipy.optimize import lsq_linear

        rows = self.row_keys(F)
        if layer_ms is not None and self.layered and self._from_timings(rows, y, layer_ms):
            return
        self.keys = sorted({k for r in rows for k in r})
        index = {k: j for j, k in enumerate(self.keys)}
        C = np.zeros((len(rows), len(self.keys)))
        for i, r in enumerate(rows):
            for k in r:
                C[i, index[k]] += 1.0
        lam = float(self.options.get("ridge", 1e-3)) * max(1.0, float(np.mean(C.sum(axis=1))))
        A = np.vstack([C, np.sqrt(lam) * np.eye(len(self.keys))])
        t = self._fwd(y)
        b = np.concatenate([t, np.zeros(len(self.keys))])
        if self.layered:
            sol = lsq_linear(A, b, bounds=(0.0, np.inf), method="bvls").x
        else:  # binned columns: base plus signed offsets
            sol = np.linalg.lstsq(A, b, rcond=None)[0]
        self.arrays = {"values": sol.astype(np.float64)}
        self._finish()
        self._sk = True

    def _from_timings(self, rows: list[list[str]], y: np.ndarray,
                      layer_ms: Sequence[Sequence[float] | None]) -> bool:
        timings: dict[str, list[float]] = {}
        for keys, total, lm in zip(rows, y, layer_ms):
            if lm is None or len(lm) != len(keys) - 1:
                continue
            for k, v in zip(keys[1:], lm):
                timings.setdefault(k, []).append(float(v))
            timings.setdefault(keys[0], []).append(float(total) - float(np.sum(lm)))
        if not timings:
            return False
        self.set_entries({k: float(np.median(v)) for k, v in timings.items()})
        self.options["source"] = "layer_timings"
        self._sk = True
        return True

    def _finish(self) -> None:
        vals = self.arrays["values"]
        by_type: dict[str, list[float]] = {}
        for k, v in zip(self.keys, vals):
            by_type.setdefault(k.split("|", 1)[0], []).append(float(v))
        self.type_mean = {t: float(np.mean(v)) for t, v in by_type.items()}

    def set_entries(self, entries: Mapping[str, float]) -> None:
        """Use per-layer timings directly: ``{key: ms}`` with keys as ``row_keys`` spells them."""
        self.keys = sorted(entries)
        self.arrays = {"values": np.asarray([float(entries[k]) for k in self.keys])}
        self._finish()

    def _raw_predict(self, F: np.ndarray) -> np.ndarray:
        if not self.keys:
            raise PredictorError("the lookup table is empty; fit it first")
        table = dict(zip(self.keys, self.arrays["values"]))
        out = np.empty(F.shape[0])
        for i, r in enumerate(self.row_keys(F)):
            out[i] = sum(table.get(k, self.type_mean.get(k.split("|", 1)[0], 0.0)) for k in r)
        return out

    def sk_predict(self, F: np.ndarray) -> np.ndarray:
        return self.predict(F)

    def export(self) -> tuple[dict[str, Any], Arrays]:
        meta, arrays = super().export()
        meta.update({"keys": self.keys, "bins": self.bins})
        return meta, arrays

    @classmethod
    def restore(cls, names: Sequence[str], meta: Mapping[str, Any], arrays: Arrays) -> Model:
        m = super().restore(names, meta, arrays)
        assert isinstance(m, LookupTableModel)
        keys = meta.get("keys")
        if not isinstance(keys, list) or len(keys) != m.arrays["values"].size:
            raise PredictorError("predictor file: lookup-table keys do not match its values")
        m.keys = [str(k) for k in keys]
        m.bins = {str(c): [float(e) for e in v] for c, v in dict(meta.get("bins") or {}).items()}
        m._finish()
        return m
