"""Plotly figures of the dashboard (pure functions of frames; no Streamlit).

Trace names are part of the tests' contract: the explorer's front trace is ``FRONT``.
Plotly reads a subset of HTML in every text it draws (``<a href>``, ``<b>``, ``<br>``), so each
name or value that comes from a study (objective, parameter, study and predictor names,
architecture summaries, categories) enters a figure through ``plain``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .analysis import ExplorerData

FRONT = "Pareto front"
DOMINATED = "dominated"
INFEASIBLE = "infeasible"
ACCENT = "#d62728"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10),
              legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0))


def plain(value: object) -> str:
    """``value`` as literal text in a plotly figure (``&``, ``<`` and ``>`` as entities, which
    plotly draws as the characters): never a link or markup."""
    return html.escape(str(value), quote=False)


def _label(axis: Mapping[str, str]) -> str:
    arrow = "↓" if axis["direction"] == "minimize" else "↑"
    return f"{plain(axis['name'])} {arrow}"


def _color_values(rows: pd.DataFrame, color: str | None) -> tuple[Any, dict[str, Any]]:
    """Marker colour values and colorbar settings for ``color`` (numeric, or categories coded)."""
    if not color or color not in rows.columns:
        return None, {}
    col = rows[color]
    if pd.api.types.is_numeric_dtype(col):
        return col.astype(float).to_numpy(), {}
    cats = sorted(col.dropna().astype(str).unique())
    codes = col.astype(str).map({c: i for i, c in enumerate(cats)}).to_numpy(dtype=float)
    return codes, {"tickvals": list(range(len(cats))), "ticktext": [plain(c) for c in cats]}


def pareto_figure(data: ExplorerData, hover: Mapping[int, str], color: str | None = None,
                  color_range: tuple[float, float] | None = None, height: int = 620) -> go.Figure:
    """The explorer plot: faded dominated cloud, marked infeasible trials, the highlighted and
    joined front (2-D) or highlighted front points (3-D). ``hover``: {trial number: summary};
    ``customdata`` of every point is its trial number."""
    names = [a["name"] for a in data.axes]
    three = len(names) == 3
    Scatter = go.Scatter3d if three else go.Scatter
    fig = go.Figure()
    cmin, cmax = color_range if color_range else (None, None)

    def add(rows: pd.DataFrame, name: str, marker: dict[str, Any], mode: str = "markers", **kw: Any) -> None:
        nums = rows["number"].to_numpy()
        text = [f"trial {n}<br>{plain(hover.get(int(n), ''))}" for n in nums]
        values, bar = _color_values(rows, color)
        if values is not None:
            marker = {**marker, "color": values, "colorscale": "Viridis", "cmin": cmin, "cmax": cmax}
            if name == FRONT:
                marker["colorbar"] = {"title": {"text": plain((color or "").removeprefix("arch."))}, **bar}
        coords = {ax: rows[n].to_numpy(dtype=float) for ax, n in zip("xyz", names)}
        fig.add_trace(Scatter(**coords, mode=mode, name=name, marker=marker, customdata=nums,
                              hovertext=text, hoverinfo="text", **kw))

    size = 3 if three else 6
    if len(data.dominated):
        add(data.dominated, DOMINATED, {"size": size, "color": "#9aa5b1", "opacity": 0.35})
    if len(data.infeasible):
        add(data.infeasible, INFEASIBLE, {"size": size + 1, "color": "#e8a0a0", "opacity": 0.55,
                                          "symbol": "x" if not three else "cross"})
    if len(data.front):
        front = data.front
        line = {} if three else {"line": {"color": ACCENT, "width": 2, "shape": "hv"}}
        add(front, FRONT, {"size": size + 5, "color": ACCENT, "line": {"color": "#111", "width": 1}},
            mode="markers" if three else "lines+markers", **line)
    axis_titles = {f"{k}axis": {"title": {"text": _label(a)}} for k, a in zip("xyz", data.axes)}
    if three:
        fig.update_layout(scene=axis_titles)
    else:
        fig.update_layout(**axis_titles)
    fig.update_layout(**LAYOUT, height=height, clickmode="event+select", dragmode="select" if not three else None,
                      hovermode="closest")
    return fig


def fronts_figure(fronts: Mapping[str, pd.DataFrame], axes: Sequence[Mapping[str, str]],
                  clouds: Mapping[str, pd.DataFrame] | None = None, height: int = 560) -> go.Figure:
    """Fronts of several studies on one 2-D plot (each joined), optional faded clouds."""
    x, y = (a["name"] for a in axes[:2])
    fig = go.Figure()
    for i, (study, front) in enumerate(fronts.items()):
        c, name = PALETTE[i % len(PALETTE)], plain(study)
        if clouds and study in clouds and len(clouds[study]):
            cloud = clouds[study]
            fig.add_trace(go.Scatter(x=cloud[x], y=cloud[y], mode="markers", name=f"{name} (all)",
                                     marker={"size": 4, "color": c, "opacity": 0.15}, hoverinfo="skip",
                                     showlegend=False))
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines+markers", name=name,
                                 line={"color": c, "width": 2, "shape": "hv"}, marker={"size": 8, "color": c},
                                 customdata=front["number"], hovertemplate=f"{name}<br>trial %{{customdata}}<br>{plain(x)}=%{{x:.4g}}<br>"
                                               f"{plain(y)}=%{{y:.4g}}<extra></extra>"))
    fig.update_layout(**LAYOUT, height=height, xaxis_title=_label(axes[0]), yaxis_title=_label(axes[1]))
    return fig


def history_figure(histories: Mapping[str, pd.DataFrame], height: int = 420) -> go.Figure:
    """Hypervolume against trial number, one line per study."""
    fig = go.Figure()
    for i, (name, h) in enumerate(histories.items()):
        fig.add_trace(go.Scatter(x=h["number"], y=h["hypervolume"], mode="lines", name=plain(name),
                                 line={"color": PALETTE[i % len(PALETTE)], "width": 2, "shape": "hv"}))
    fig.update_layout(**LAYOUT, height=height, xaxis_title="trial", yaxis_title="hypervolume (normalised)")
    return fig


def layers_figure(rows: pd.DataFrame, other: pd.DataFrame | None = None, labels: tuple[str, str] = ("", ""),
                  height_per_row: int = 190) -> go.Figure:
    """Per-layer bars: one panel per (block, field), layers on x; ``other`` overlays a second trial."""
    panels = list(dict.fromkeys(zip(rows["block"], rows["field"])))
    if other is not None:
        panels += [p for p in dict.fromkeys(zip(other["block"], other["field"])) if p not in panels]
    cols = 2 if len(panels) > 1 else 1
    nrows = max(1, -(-len(panels) // cols))
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[f"{plain(b)} · {plain(f)}" for b, f in panels],
                        vertical_spacing=min(0.12, 0.5 / nrows), horizontal_spacing=0.08)
    for k, (block, field) in enumerate(panels):
        r, c = k // cols + 1, k % cols + 1
        for j, (frame, label) in enumerate(((rows, labels[0]), (other, labels[1]))):
            if frame is None:
                continue
            sel = frame[(frame["block"] == block) & (frame["field"] == field)]
            fig.add_trace(go.Bar(x=sel["layer"], y=sel["value"], name=label or "this trial",
                                 marker_color=PALETTE[j], showlegend=k == 0, legendgroup=str(j),
                                 text=[f"{v:g}" for v in sel["value"]], textposition="outside"), row=r, col=c)
        fig.update_xaxes(type="category", title_text="layer", row=r, col=c)
    fig.update_layout(**{**LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)}, barmode="group",
                      height=max(260, height_per_row * nrows + 80))
    return fig


def parity_figure(y_true: Sequence[float], y_pred: Sequence[float], title: str, unit: str = "",
                  highlight: tuple[float, float] | None = None, height: int = 420) -> go.Figure:
    """Predicted against true values with the y = x line (and an optional highlighted point)."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    lo = float(np.nanmin(np.concatenate([t, p]))) if t.size else 0.0
    hi = float(np.nanmax(np.concatenate([t, p]))) if t.size else 1.0
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                             line={"color": "#888", "dash": "dash"}))
    fig.add_trace(go.Scatter(x=t, y=p, mode="markers", name="holdout" if highlight is None else "trials",
                             marker={"size": 6, "color": PALETTE[0], "opacity": 0.6}))
    if highlight is not None:
        fig.add_trace(go.Scatter(x=[highlight[0]], y=[highlight[1]], mode="markers", name="this trial",
                                 marker={"size": 14, "color": ACCENT, "line": {"color": "#111", "width": 1}}))
    u = f" ({unit})" if unit else ""
    legend = dict(x=0.99, y=0.01, xanchor="right", yanchor="bottom", bgcolor="rgba(255,255,255,0.7)")
    fig.update_layout(**{**LAYOUT, "margin": dict(l=10, r=10, t=50, b=10), "legend": legend}, height=height,
                      title={"text": plain(title), "x": 0, "font": {"size": 14}},
                      xaxis_title=f"measured{u}", yaxis_title=f"predicted{u}")
    return fig


def importance_figure(imp: Mapping[str, float], title: str, height: int = 380) -> go.Figure:
    """Horizontal bars of parameter importance, largest on top."""
    items = sorted(imp.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[plain(k) for k, _ in items], orientation="h",
                           marker_color=PALETTE[0], text=[f"{v:.2f}" for _, v in items], textposition="outside"))
    fig.update_layout(**LAYOUT, height=max(height, 28 * len(items) + 80), title=plain(title),
                      xaxis_title="importance")
    return fig


def parallel_figure(rows: pd.DataFrame, columns: Sequence[str], color: str, height: int = 480) -> go.Figure:
    """Parallel coordinates of ``columns`` (categorical ones coded), lines coloured by ``color``."""
    dims = []
    for c in columns:
        col = rows[c]
        label = plain(c.removeprefix("arch.").removeprefix("metric."))
        if pd.api.types.is_numeric_dtype(col):
            dims.append({"label": label, "values": col.astype(float).fillna(np.nan).to_numpy()})
        else:
            cats = sorted(col.dropna().astype(str).unique())
            codes = col.astype(str).map({k: i for i, k in enumerate(cats)}).to_numpy(dtype=float)
            dims.append({"label": label, "values": codes, "tickvals": list(range(len(cats))),
                         "ticktext": [plain(k) for k in cats]})
    fig = go.Figure(go.Parcoords(line={"color": rows[color].astype(float).to_numpy(), "colorscale": "Viridis",
                                       "showscale": True, "colorbar": {"title": {"text": plain(color)}}},
                                 dimensions=dims))
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=60, t=60, b=30))
    return fig


def rank_figure(report: Mapping[str, Any], height: int = 420) -> go.Figure:
    """Inherited (supernet) against standalone metric per sharing mode, from ``rank/report.json``."""
    standalone = report.get("standalone") or {}
    keys = [k for k in report.get("archs") or list(standalone) if k in standalone]
    fig = go.Figure()
    xs = [standalone[k] for k in keys]
    for i, (mode, sn) in enumerate((report.get("supernets") or {}).items()):
        inh = sn.get("inherited") or {}
        pts = [(standalone[k], inh[k]) for k in keys if k in inh]
        fig.add_trace(go.Scatter(x=[a for a, _ in pts], y=[b for _, b in pts], mode="markers", name=plain(mode),
                                 marker={"size": 8, "color": PALETTE[i % len(PALETTE)]}))
    if xs:
        lo, hi = min(xs), max(xs)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line={"color": "#888", "dash": "dash"}))
    metric = plain(report.get("metric", "metric"))
    fig.update_layout(**LAYOUT, height=height, xaxis_title=f"standalone {metric}", yaxis_title=f"inherited {metric}")
    return fig
