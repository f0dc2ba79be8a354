"""Ranking reports on disk: ``report.json`` (strict JSON) and a plotly scatter of standalone vs
inherited metrics per supernet (``report.html``), both written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archlab.spaces import Arch, SearchSpace
from archlab.spaces.io import atomic_write_json, atomic_write_text

REPORT_NAME = "report.json"
PLOT_NAME = "report.html"


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike[str], space: SearchSpace | None = None) -> None:
    """``report.json`` and ``report.html`` (standalone vs inherited scatter, one trace per
    supernet, the y = x line) under ``out_dir``, atomically."""
    out = Path(out_dir)
    atomic_write_json(out / REPORT_NAME, _json_safe(report))
    atomic_write_text(out / PLOT_NAME, scatter_html(report, space))


def scatter_html(report: Mapping[str, Any], space: SearchSpace | None = None) -> str:
    """Self-contained plotly HTML: standalone metric (x) vs inherited metric (y) per supernet."""
    import plotly.graph_objects as go

    keys = list(report["archs"])
    labels = [space.summary(Arch.from_json(k)) if space is not None else k for k in keys]
    xs = [report["standalone"][k] for k in keys]
    fig = go.Figure()
    finite = [v for v in xs if math.isfinite(v)]
    for mode, entry in report["supernets"].items():
        ys = [entry["inherited"][k] for k in keys]
        finite += [v for v in ys if math.isfinite(v)]
        name = f"{mode} (tau {entry['kendall_tau']:.2f}, gap {entry['mean_abs_gap']:.3f})"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=name, text=labels,
                                 hovertemplate="%{text}<br>standalone %{x:.4f}<br>inherited %{y:.4f}"))
    if finite:
        lo, hi = min(finite), max(finite)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line={"dash": "dash", "color": "gray"}))
    metric = report.get("metric", "metric")
    fig.update_layout(title=f"Ranking consistency: {metric}, {len(keys)} architectures",
                      xaxis_title=f"standalone {metric}", yaxis_title=f"inherited {metric}",
                      template="plotly_white")
    return fig.to_html(include_plotlyjs=True, full_html=True)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
