"""What the pages compute from a trials frame, on top of the results API (no Streamlit here).

Fronts and hypervolumes always come from ``archlab.search.results``; this module only
re-labels feasibility for user-chosen constraint bounds, thins the dominated cloud for
plotting, and formats architectures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from archlab.search.results import hypervolume, pareto_front

if TYPE_CHECKING:
    from archlab.spaces import SearchSpace

MAX_CLOUD = 4000  # dominated / infeasible points drawn per category
GRID = 160  # thinning grid per axis


def axis_options(trials: pd.DataFrame) -> list[dict[str, str]]:
    """Axes the explorer offers: the objectives, then (only for single-objective studies) the
    extra metrics, taken as minimised."""
    objs = list(trials.attrs.get("objectives") or [])
    if len(objs) >= 2:
        return objs
    extra = [{"name": c, "direction": "minimize"} for c in trials.columns if c.startswith("metric.")]
    return objs + extra


def constraint_values(trials: pd.DataFrame) -> dict[str, pd.Series]:
    """``{metric: values}`` of each constraint in the study's ``constraints`` (metric units):
    ``constraint.<name>`` (value - bound) plus the recorded bound."""
    out = {}
    for name, bound in (trials.attrs.get("constraints") or {}).items():
        col = f"constraint.{name}"
        if col in trials.columns:
            out[name] = trials[col].astype(float) + float(bound)
    return out


def with_bounds(trials: pd.DataFrame, bounds: Mapping[str, float] | None) -> pd.DataFrame:
    """A shallow copy of ``trials`` whose ``feasible`` column holds for the given upper
    ``bounds`` ({metric: bound}) instead of the study's: complete, every bounded metric known
    and <= its bound, and every other recorded constraint (e.g. the space's own) satisfied.
    With the study's own bounds it equals the stored ``feasible``."""
    if not bounds:
        return trials
    study = trials.attrs.get("constraints") or {}
    ok = (trials["state"] == "COMPLETE").to_numpy().copy()
    values = constraint_values(trials)
    for name in study:
        col = f"constraint.{name}"
        if col not in trials.columns:
            ok &= False
            continue
        bound = float(bounds.get(name, study[name]))
        v = values[name].to_numpy()
        ok &= np.isfinite(v) & (v <= bound + 1e-12 * max(1.0, abs(bound)))
    for col in trials.columns:
        if col.startswith("constraint.") and col[len("constraint."):] not in study:
            ok &= (trials[col].fillna(np.inf).to_numpy() <= 0)
    out = trials.copy(deep=False)
    out["feasible"] = ok
    out.attrs = dict(trials.attrs)
    return out


@dataclass
class ExplorerData:
    """Rows to draw in the Pareto explorer, by category (trial numbers)."""

    front: pd.DataFrame
    dominated: pd.DataFrame
    infeasible: pd.DataFrame
    n_dominated: int
    n_infeasible: int
    n_failed: int
    hypervolume: float
    axes: list[Mapping[str, str]] = field(default_factory=list)


def explorer_data(trials: pd.DataFrame, axes: Sequence[Mapping[str, str]],
                  bounds: Mapping[str, float] | None = None, max_cloud: int = MAX_CLOUD) -> ExplorerData:
    """Front (exact, ``pareto_front`` on the chosen axes under ``bounds``), the dominated
    feasible cloud and the infeasible trials, both thinned to at most ``max_cloud`` points."""
    axes = [{"name": a["name"], "direction": a["direction"]} for a in axes]
    df = with_bounds(trials, bounds)
    front = pareto_front(df, axes)
    names = [a["name"] for a in axes]
    complete = df["state"] == "COMPLETE"
    finite = np.isfinite(df[names].to_numpy(dtype=float)).all(axis=1)
    on_front = df["number"].isin(front["number"])
    dominated = df[complete & finite & df["feasible"] & ~on_front]
    infeasible = df[complete & finite & ~df["feasible"]]
    hv = hypervolume(df, objectives=axes) if len(front) else 0.0
    return ExplorerData(front, thin(dominated, names, max_cloud), thin(infeasible, names, max_cloud),
                        len(dominated), len(infeasible), int((df["state"] == "FAIL").sum()), hv, list(axes))


def thin(rows: pd.DataFrame, names: Sequence[str], max_points: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_points`` rows that keep the cloud's shape: one row per cell of a
    ``GRID``-per-axis grid (outliers and edges survive), then a seeded sample if still too many."""
    if len(rows) <= max_points:
        return rows
    X = rows[list(names)].to_numpy(dtype=float)
    lo, hi = X.min(axis=0), X.max(axis=0)
    cells = np.floor((X - lo) / np.where(hi > lo, hi - lo, 1.0) * (GRID - 1)).astype(np.int64)
    key = np.zeros(len(rows), dtype=np.int64)
    for j in range(cells.shape[1]):
        key = key * GRID + cells[:, j]
    _, first = np.unique(key, return_index=True)
    kept = rows.iloc[np.sort(first)]
    if len(kept) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(kept), max_points, replace=False))
        kept = kept.iloc[idx]
    return kept


@lru_cache(maxsize=8)
def _space(space_json: str) -> SearchSpace:
    from archlab.spaces import SearchSpace

    return SearchSpace.from_json(space_json)


def space_of(trials: pd.DataFrame) -> SearchSpace | None:
    """The study's ``SearchSpace`` (None when the study records none or it cannot be read)."""
    text = trials.attrs.get("space")
    if not text:
        return None
    try:
        return _space(text if isinstance(text, str) else json.dumps(text))
    except Exception:
        return None


def rows_of(trials: pd.DataFrame, numbers: Sequence[int] | np.ndarray) -> pd.DataFrame:
    """The rows of the given trial numbers, in that order (``trials`` ordered by number, as
    ``load_trials`` gives it; a binary search, no index built). Raises ``KeyError`` for a
    number the frame lacks."""
    wanted = np.asarray(numbers, dtype=np.int64)
    at = trials["number"].to_numpy()
    pos = np.minimum(np.searchsorted(at, wanted), max(len(at) - 1, 0))
    if len(wanted) and (not len(at) or not np.array_equal(at[pos], wanted)):
        missing = sorted(set(wanted.tolist()) - set(at.tolist()))
        raise KeyError(f"no trial numbered {missing[:5]} in this study")
    rows = trials.iloc[pos]
    rows.attrs = dict(trials.attrs)
    return rows


def summaries(trials: pd.DataFrame, limit: int = 160) -> list[str]:
    """A one-line architecture summary per row (``space.summary``; raw JSON without a space)."""
    space = space_of(trials)
    out = []
    for text in trials["arch"].tolist() if "arch" in trials.columns else [None] * len(trials):
        if not text:
            out.append("")
            continue
        try:
            s = space.summary(json.loads(text)) if space is not None else text
        except Exception:
            s = text
        out.append(s if len(s) <= limit else s[: limit - 1] + "…")
    return out


def arch_params(trials: pd.DataFrame) -> list[str]:
    """``arch.<param>`` columns, top-level parameters first."""
    cols = [c for c in trials.columns if c.startswith("arch.")]
    return sorted(cols, key=lambda c: (c.count("."), cols.index(c)))


def per_layer_rows(arch: Mapping[str, Any]) -> pd.DataFrame:
    """Long table ``(block, layer, field, value)`` of every per-layer list in an architecture
    (nested blocks get labels like ``2.1``); numeric values only."""
    rows: list[dict[str, Any]] = []

    def walk(block: Mapping[str, Any], prefix: str, label: str) -> None:
        for k, v in block.items():
            if isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
                for i, item in enumerate(v):
                    lab = f"{label}.{i}" if label else str(i)
                    for f, x in item.items():
                        if isinstance(x, (int, float)) and not isinstance(x, bool):
                            rows.append({"block": prefix + k, "layer": lab, "field": f, "value": float(x)})
                    walk(item, f"{prefix}{k}.", lab)

    walk(arch, "", "")
    return pd.DataFrame(rows, columns=["block", "layer", "field", "value"])


def flat_arch(arch: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"layers.0.ffn": 256, ...}`` of a nested architecture."""
    out: dict[str, Any] = {}
    for k, v in arch.items():
        if isinstance(v, Mapping):
            out.update(flat_arch(v, f"{prefix}{k}."))
        elif isinstance(v, list) and all(isinstance(x, Mapping) for x in v):
            for i, item in enumerate(v):
                out.update(flat_arch(item, f"{prefix}{k}.{i}."))
        else:
            out[prefix + k] = v
    return out


def latency_pair(columns: Sequence[str]) -> tuple[str, str] | None:
    """``(predicted, measured)`` latency columns when both exist: a latency column naming
    "pred" (or a plain ``latency_ms``) and one naming "meas"."""
    lat = [c for c in columns if "latency" in c.lower()]
    meas = [c for c in lat if "meas" in c.lower()]
    pred = [c for c in lat if "pred" in c.lower()] or [c for c in lat if re.fullmatch(r"(metric\.)?latency(_ms)?", c)]
    return (pred[0], meas[0]) if pred and meas else None


def common_bounds(frames: Sequence[pd.DataFrame], objectives: Sequence[Mapping[str, str]]) -> tuple[dict, dict] | None:
    """``(best, worst)`` raw values per objective over the completed feasible trials of all
    ``frames``: one hypervolume scale for comparing studies (``hypervolume(..., bounds=...)``)."""
    names = [o["name"] for o in objectives]
    parts = [f.loc[(f["state"] == "COMPLETE") & f["feasible"], names] for f in frames
             if all(n in f.columns for n in names)]
    if not parts:
        return None
    Y = pd.concat(parts).astype(float)
    Y = Y[np.isfinite(Y.to_numpy()).all(axis=1)]
    if not len(Y):
        return None
    best, worst = {}, {}
    for o in objectives:
        col = Y[o["name"]]
        lo, hi = float(col.min()), float(col.max())
        best[o["name"]], worst[o["name"]] = (hi, lo) if o["direction"] == "maximize" else (lo, hi)
    return best, worst
