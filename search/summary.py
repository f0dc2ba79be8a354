"""The lines ``archlab search`` ends with: counts, hypervolume and what it is relative to, the
Pareto front as a table, and the command that exports one of its trials.

Units: a built-in objective has its unit (``predicted_latency`` / ``measured_latency``: ms,
``params``: parameters, ``macs``: MACs, ``inherited``: the task's metric, accuracy as a fraction,
loss in nats); a callable's unit is read from its name's suffix (``latency_ms``: ms) or left out.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .results import REFERENCE_MARGIN, _counted, _objectives, hypervolume, pareto_front

BUILTIN_UNITS = {"predicted_latency": "ms", "measured_latency": "ms", "params": "parameters", "macs": "MACs"}
SUFFIX_UNITS = {"_ms": "ms", "_s": "s", "_mb": "MB", "_kb": "KB", "_macs": "MACs", "_params": "parameters"}
#: front rows shown; the rest are counted
MAX_ROWS = 20


def objective_units(objectives: Mapping[str, Any], task_metric: str | None = None) -> dict[str, str]:
    """``{objective name: unit}`` ("" when unknown) for ``{name: (direction, source)}``;
    ``task_metric`` (e.g. ``val_accuracy``) is what ``inherited`` measures."""
    out: dict[str, str] = {}
    metric = str(task_metric or "")
    for name, spec in objectives.items():
        source = spec if isinstance(spec, str) else (spec[1] if isinstance(spec, (tuple, list)) and len(spec) == 2 else None)
        unit = BUILTIN_UNITS.get(source, "") if isinstance(source, str) else ""
        if source == "inherited":
            unit = "fraction" if "acc" in metric else "nats" if "loss" in metric else ""
        if not unit:
            unit = next((u for suffix, u in SUFFIX_UNITS.items() if str(name).lower().endswith(suffix)), "")
        out[str(name)] = unit
    return out


def _fmt(v: Any) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.5g}"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.rjust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]


def search_report(df: pd.DataFrame, *, units: Mapping[str, str] | None = None, storage: str | None = None,
                  experiment: str | None = None, export_root: str = "export",
                  max_rows: int = MAX_ROWS) -> list[str]:
    """The closing lines of a search over the ``load_trials`` frame ``df``: counts (distinct
    architectures next to trial counts), hypervolume with its normalisation and reference
    point in the objectives' units, the front (trial, objective values with units, arch key),
    and ``archlab export STORAGE STUDY TRIAL OUT --experiment FILE`` for its first trial."""
    units = dict(units or {})
    objs = _objectives(df, None)
    name = str(df.attrs.get("study_name", "?"))
    state = df["state"] if "state" in df.columns else pd.Series([], dtype=object)
    done = df[state == "COMPLETE"]
    distinct = int(done["arch"].dropna().nunique()) if "arch" in done.columns else len(done)
    others = ", ".join(f"{int((state == s).sum())} {s.lower()}" for s in ("FAIL", "RUNNING", "WAITING") if (state == s).any())
    front = pareto_front(df)
    lines = [f"study {name}: {len(done)} complete trials ({distinct} distinct architectures evaluated)"
             + (f", {others}" if others else "") + f"; Pareto front: {len(front)} trial{'' if len(front) == 1 else 's'}"]
    counted, Y = _counted(df, objs)
    hv = hypervolume(df)
    if len(Y):
        best, worst = Y.min(axis=0), Y.max(axis=0)
        signs = np.array([-1.0 if o["direction"] == "maximize" else 1.0 for o in objs])
        ref = (worst + REFERENCE_MARGIN * np.where(worst > best, worst - best, 1.0)) * signs
        where = ", ".join(f"{o['name']} {_fmt(r)}{(' ' + units[o['name']]) if units.get(o['name']) else ''}"
                          for o, r in zip(objs, ref))
        lines.append(f"hypervolume {hv:.4f} of at most {(1 + REFERENCE_MARGIN) ** len(objs):.4f}: each objective "
                     f"scaled so the best of the {len(counted)} feasible complete trials is 0 and the worst 1, "
                     f"reference point 1.1 on every scaled axis (= {where})")
    else:
        lines.append("hypervolume 0.0000: no feasible complete trial yet")
    if len(front):
        head = ["trial"] + [f"{o['name']} ({o['direction'][:3]}{', ' + units[o['name']] if units.get(o['name']) else ''})"
                            for o in objs] + ["arch"]
        body = [[str(int(r["number"]))] + [_fmt(r[o["name"]]) for o in objs] + [str(r.get("arch", ""))]
                for _, r in front.head(max_rows).iterrows()]
        lines += _table([head, *body])
        if len(front) > max_rows:
            lines.append(f"... and {len(front) - max_rows} more front trials (archlab app shows them all)")
        first = int(front["number"].iloc[0])
        if storage and experiment:
            out = f"{export_root.rstrip('/')}/trial-{first}"
            cmd = ["archlab", "export", storage, name, str(first), out, "--experiment", experiment]
            lines.append(f"export trial {first}: {' '.join(shlex.quote(c) for c in cmd)}")
    return lines
