"""Bring your own measurements: read a CSV or parquet table into ``(X, y)`` for a predictor.

A table holds either architectures (an ``arch`` column of JSON, or flat parameter columns
named as ``space.param_names()`` spells them, optionally prefixed ``arch.``) or plain numeric
feature columns, plus a target column (latency in ms by default). The target may be a sum of
columns, ``"latency_mean_encoder+latency_mean_decoder"``. Every bad row is reported by number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archlab.spaces import Arch, SearchSpace, SpaceError

from .errors import PredictorError

DEFAULT_TARGETS = ("latency_ms", "latency", "ms")
SPACE_META_KEY = b"archlab.space"


@dataclass
class Measurements:
    """``X`` (list of ``Arch`` or a DataFrame of features), ``y`` and where they came from."""

    X: Any
    y: np.ndarray
    space: SearchSpace | None
    target: str
    features: list[str] = field(default_factory=list)
    frame: Any = None
    layer_ms: list[list[float] | None] | None = None

    def __len__(self) -> int:
        return int(self.y.size)


def read_table(path: str | Path) -> tuple[Any, SearchSpace | None]:
    """A DataFrame from ``.csv`` or ``.parquet`` (and the space stored in parquet metadata)."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise PredictorError(f"{p}: no such file")
    suffix = p.suffix.lower()
    space = None
    if suffix == ".csv":
        try:
            frame = pd.read_csv(p)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise PredictorError(f"{p}: cannot read CSV ({exc})") from None
    elif suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise PredictorError(f"{p}: cannot read parquet ({exc})") from None
        meta = table.schema.metadata or {}
        if SPACE_META_KEY in meta:
            space = SearchSpace.from_json(meta[SPACE_META_KEY].decode())
        frame = table.to_pandas()
    else:
        raise PredictorError(f"{p}: unsupported file type {suffix!r}; allowed: .csv, .parquet")
    return frame, space


def _target(frame: Any, spec: str | None, path: str) -> tuple[str, np.ndarray]:
    cols = [str(c) for c in frame.columns]
    if spec is None:
        found = [c for c in DEFAULT_TARGETS if c in cols]
        if not found:
            raise PredictorError(
                f"{path}: no latency column (looked for {', '.join(DEFAULT_TARGETS)}); name one with "
                f"--latency-column / target=; columns: {', '.join(cols)}")
        spec = found[0]
    parts = [s.strip() for s in spec.split("+")]
    for part in parts:
        if part not in cols:
            raise PredictorError(f"{path}: missing target column {part!r}; columns: {', '.join(cols)}")
    total = np.zeros(len(frame))
    for part in parts:
        try:
            total = total + frame[part].to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise PredictorError(f"{path}: target column {part!r} is not numeric") from None
    return spec, total


MAX_LATENCY = 1e9  # ms (11.6 days per forward pass): anything above is a unit mix-up or damage
MAX_ABS_VALUE = 1e100  # other targets: squares and sums of errors must stay finite


def _check_values(y: np.ndarray, name: str, positive: bool, path: str) -> None:
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise PredictorError(f"{path}: row {int(bad[0])}: {name} is NaN, infinite or missing ({bad.size} such rows)")
    if positive:
        bad = np.flatnonzero(y <= 0)
        if bad.size:
            raise PredictorError(
                f"{path}: row {int(bad[0])}: {name} = {y[bad[0]]:g}; latencies must be > 0 ({bad.size} such rows)")
    high = MAX_LATENCY if positive else MAX_ABS_VALUE
    bad = np.flatnonzero(np.abs(y) > high)
    if bad.size:
        what = "latencies must be at most 1e9 (ms)" if positive else "values must be within +-1e100"
        raise PredictorError(f"{path}: row {int(bad[0])}: {name} = {y[bad[0]]:g}; {what} ({bad.size} such rows)")


def _archs_from_json(frame: Any, space: SearchSpace, path: str) -> list[Arch]:
    out = []
    for i, text in enumerate(frame["arch"]):
        try:
            out.append(space.validate(text if isinstance(text, str) else json.dumps(text), check_constraints=False))
        except SpaceError as exc:
            raise PredictorError(f"{path}: row {i}: architecture not in space {space.name!r}: {exc}") from None
    return out


def _archs_from_params(frame: Any, space: SearchSpace, path: str) -> list[Arch] | None:
    names = space.param_names()
    prefix = "arch." if any(f"arch.{n}" in frame.columns for n in names) else ""
    cols = {n: f"{prefix}{n}" for n in names if f"{prefix}{n}" in frame.columns}
    if not cols:
        return None
    out = []
    records = frame[list(cols.values())].to_dict("records")
    for i, rec in enumerate(records):
        flat = {}
        for n, c in cols.items():
            v = rec[c]
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            flat[n] = v.item() if isinstance(v, np.generic) else v
        try:
            out.append(space.from_params(flat))
        except SpaceError as exc:
            raise PredictorError(f"{path}: row {i}: architecture not in space {space.name!r}: {exc}") from None
    return out


def _layer_ms(frame: Any, path: str = "") -> list[list[float] | None] | None:
    """Per-layer timings of a profiling table (``layer_ms`` JSON column), if any; each must be
    a finite number in [0, MAX_LATENCY] ms."""
    if "layer_ms" not in frame.columns:
        return None
    out: list[list[float] | None] = []
    for i, text in enumerate(frame["layer_ms"]):
        try:
            v = json.loads(text) if isinstance(text, str) and text else None
        except (ValueError, RecursionError):
            v = None
        if isinstance(v, list):
            try:
                times = [float(t) for t in v]
            except (TypeError, ValueError, OverflowError):
                raise PredictorError(f"{path}: row {i}: layer_ms holds a value that is not a number") from None
            if not all(0 <= t <= MAX_LATENCY for t in times):  # NaN fails too
                raise PredictorError(f"{path}: row {i}: layer_ms holds {next(t for t in times if not 0 <= t <= MAX_LATENCY):g}; "
                                     "per-layer times must be finite and in [0, 1e9] ms")
            out.append(times)
        else:
            out.append(None)
    return out if any(v is not None for v in out) else None


def load_measurements(path: str | Path, space: SearchSpace | None = None, target: str | None = None,
                      features: list[str] | None = None, positive: bool = True,
                      where: dict[str, Any] | None = None) -> Measurements:
    """Read ``path`` (CSV or parquet) into ``Measurements`` ready for ``predictor.fit(m.X, m.y)``.

    - ``space``: read architectures (``arch`` JSON column or flat parameter columns); a
      profiling table carries its space, used when none is given.
    - ``target``: the value column (default ``latency_ms``, ``latency`` or ``ms``), or a sum
      ``"a+b"``. ``positive`` requires values > 0 (latencies).
    - ``features``: explicit feature columns when there are no architectures; by default all
      numeric columns except the target's and those that look like measurements
      (``latency*``, ``*_ms``).
    - ``where``: keep rows whose columns equal these values (``{"kind": "arch"}``).
    """
    frame, stored = read_table(path)
    name = str(path)
    if where:
        for col, val in where.items():
            if col in frame.columns:
                frame = frame[frame[col] == val]
        frame = frame.reset_index(drop=True)
    if len(frame) == 0:
        raise PredictorError(f"{name}: the table has no rows")
    spec, y = _target(frame, target, name)
    _check_values(y, spec, positive, name)
    space = space or stored
    if space is not None:
        archs: list[Arch] | None
        if "arch" in frame.columns:
            archs = _archs_from_json(frame, space, name)
        else:
            archs = _archs_from_params(frame, space, name)
            if archs is None:
                raise PredictorError(
                    f"{name}: no 'arch' column and no parameter columns of space {space.name!r} "
                    f"(expected e.g. {', '.join(space.param_names()[:3])})")
        return Measurements(archs, y, space, spec, [], frame, _layer_ms(frame, name))
    used = set(spec.split("+"))
    if features is None:
        features = [str(c) for c in frame.columns
                    if str(c) not in used and getattr(frame[c].dtype, "kind", "O") in "biuf"
                    and not str(c).startswith("latency") and not str(c).endswith("_ms")]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise PredictorError(f"{name}: missing feature column {missing[0]!r}")
    if not features:
        raise PredictorError(f"{name}: no numeric feature columns besides the target {spec!r}")
    X = frame[features].astype(np.float64)
    for c in features:
        bad = np.flatnonzero(~np.isfinite(X[c].to_numpy()))
        if bad.size:
            raise PredictorError(f"{name}: row {int(bad[0])}: feature {c!r} is NaN or missing")
    return Measurements(X.reset_index(drop=True), y, None, spec, list(features), frame)
