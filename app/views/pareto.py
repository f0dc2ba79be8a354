"""Pareto explorer: two objectives (or three in 3-D), the feasible front highlighted and joined,
dominated points faded, infeasible ones marked; constraint sliders recompute the front at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from archlab.app import analysis, cache, figures, ui

ctx = ui.context()
st.title("Pareto explorer")


def _bounds_panel(df: pd.DataFrame) -> dict[str, float]:
    values = analysis.constraint_values(df)
    study_bounds = df.attrs.get("constraints") or {}
    bounds: dict[str, float] = {}
    if not values:
        st.caption("This study has no constraints.")
        return bounds
    st.markdown("**Constraint bounds** (upper)")
    for name, v in values.items():
        bound = float(study_bounds[name])
        finite = v[np.isfinite(v)]
        lo = float(min(finite.min(), bound)) if len(finite) else bound
        hi = float(max(finite.max(), bound)) if len(finite) else bound + 1.0
        if hi <= lo:
            hi = lo + 1.0
        step = float(f"{(hi - lo) / 200:.2g}")
        bounds[name] = st.slider(f"{ui.esc(name)} ≤", min_value=lo, max_value=hi, value=bound, step=step, format="%.4g",
                                 key=f"bound.{ctx.study}.{name}", help=f"study bound: {bound:g}")
    if any(abs(bounds[k] - float(study_bounds[k])) > 0 for k in bounds) and st.button("Reset to study bounds"):
        for k in bounds:
            st.session_state.pop(f"bound.{ctx.study}.{k}", None)
        st.rerun()
    return bounds


def _page() -> None:
    df = ui.study_trials(ctx)
    if df is None or ui.completed(df, ctx.study) is None:
        return
    options = analysis.axis_options(df)
    names = [o["name"] for o in options]
    if len(options) < 2:
        st.warning(f"Study **{ui.esc(ctx.study)}** has one objective and no extra metrics: there is no trade-off to plot. "
                   "See the Hypervolume and Studies pages.")
        return
    c1, c2, c3, c4 = st.columns([3, 3, 3, 3])
    three = c4.toggle("3-D", key=f"three.{ctx.study}", disabled=len(options) < 3,
                      help="Plot three objectives in 3-D") if len(options) >= 3 else False
    x = c1.selectbox("x", names, index=0, key=f"x.{ctx.study}")
    y = c2.selectbox("y", names, index=1, key=f"y.{ctx.study}")
    axes_names = [x, y]
    if three:
        rest = [n for n in names if n not in (x, y)] or names
        axes_names.append(c3.selectbox("z", rest, key=f"z.{ctx.study}"))
    colour_options = ["front / dominated", *analysis.arch_params(df),
                      *[c for c in df.columns if c.startswith("metric.")], *names]
    colour = (c3 if not three else c4).selectbox("colour by", colour_options, key=f"colour.{ctx.study}")
    if len(set(axes_names)) < len(axes_names):
        st.warning("Pick different objectives for the axes.")
        return
    axes = [next(o for o in options if o["name"] == n) for n in axes_names]
    plot_col, side = st.columns([4, 1])
    with side:
        bounds = _bounds_panel(df)
    data = cache.explorer(*ui.selected(ctx), axes, bounds)
    shown = pd.concat([data.front, data.dominated, data.infeasible])
    hover = dict(zip(shown["number"].tolist(), cache.summaries(*ui.selected(ctx), shown["number"].tolist())))
    color = None if colour == "front / dominated" else colour
    crange = None
    if color is not None and pd.api.types.is_numeric_dtype(df[color]):
        vals = df.loc[df["state"] == "COMPLETE", color].astype(float)
        crange = (float(vals.min()), float(vals.max()))
    fig = figures.pareto_figure(data, hover, color=color, color_range=crange)
    with side:
        st.metric("front size", len(data.front))
        st.metric("hypervolume", f"{data.hypervolume:.4f}", help="normalised on the plotted objectives")
        st.caption(f"dominated {data.n_dominated:,} (drawn {len(data.dominated):,}) · infeasible "
                   f"{data.n_infeasible:,} (drawn {len(data.infeasible):,}) · failed {data.n_failed:,}")
    with plot_col:
        event = st.plotly_chart(fig, key=f"pareto.{ctx.study}", on_select="rerun",
                                selection_mode=("points", "box", "lasso"), config={"displaylogo": False})
    picked = _selected(event)
    if picked and tuple(picked) != st.session_state.get("_pareto_last_pick"):
        st.session_state["_pareto_last_pick"] = tuple(picked)
        if len(picked) == 1:
            ui.open_trial(picked[0])
    st.subheader(f"Front ({len(data.front)} trials)")
    front = data.front
    cols = ["number", *[a["name"] for a in axes]] + [c for c in front.columns if c.startswith("metric.")]
    table = front[cols].assign(architecture=[hover.get(int(n), "") for n in front["number"]])
    if picked and len(picked) > 1:
        st.caption(f"{len(picked)} points selected on the plot")
        table = shown[shown["number"].isin(picked)][cols].assign(
            architecture=[hover.get(int(n), "") for n in shown[shown["number"].isin(picked)]["number"]])
    table = table.rename(columns=lambda c: c.removeprefix("metric."))
    ev = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                      key=f"front_table.{ctx.study}")
    if ev is not None and ev.selection.rows:
        ui.open_trial(int(table.iloc[ev.selection.rows[0]]["number"]))
    st.caption("Select a point (or a table row) to open its architecture.")


def _selected(event: object) -> list[int]:
    try:
        points = event.selection["points"]  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):
        return []
    out = []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if cd is not None:
            out.append(int(cd))
    return sorted(set(out))


with ui.friendly():
    _page()
