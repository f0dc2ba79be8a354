"""The ranking report's plot (``report.html``): standalone vs inherited metrics per supernet.

Plotting lives on the top floor: ``archlab.supernets`` computes and saves ``report.json``, the
command line (``archlab rank``) draws it here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archlab.core.io import atomic_write_text
from archlab.spaces import Arch, SearchSpace

PLOT_NAME = "report.html"


def write_plot(report: Mapping[str, Any], out_dir: str | os.PathLike[str], space: SearchSpace | None = None) -> Path:
    """``report.html`` (``scatter_html``) under ``out_dir``, atomically; returns its path."""
    path = Path(out_dir) / PLOT_NAME
    atomic_write_text(path, scatter_html(report, space))
    return path


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
