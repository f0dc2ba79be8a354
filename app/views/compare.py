"""Compare studies: their fronts on one plot (e.g. entangled vs mixture of supernets, nsga2 vs tpe)
with hypervolumes on one common scale in a table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from archlab.app import analysis, cache, figures, ui
from archlab.search.results import hypervolume, pareto_front

ctx = ui.context()
st.title("Compare studies")


def _page() -> None:
    if ui.study_trials(ctx) is None:
        return
    default = list(ctx.studies[-2:]) if len(ctx.studies) > 1 else [ctx.study]
    chosen = st.multiselect("Studies", list(ctx.studies), default=default, key="cmp_studies")
    if not chosen:
        st.info("Pick the studies to compare.")
        return
    frames = {n: cache.trials(ui.selected(ctx)[0], n) for n in chosen}
    sets = [{o["name"]: o for o in f.attrs.get("objectives") or []} for f in frames.values()]
    shared = [name for name in sets[0] if all(name in s for s in sets[1:])]
    if len(shared) < 2:
        st.warning("The chosen studies share fewer than two objectives; nothing to compare on one plot.")
        return
    c1, c2, c3 = st.columns([2, 2, 1])
    x = c1.selectbox("x", shared, index=0, key="cmp_x")
    y = c2.selectbox("y", shared, index=1, key="cmp_y")
    cloud = c3.toggle("Show all trials", value=False, key="cmp_cloud")
    if x == y:
        st.warning("Pick two different objectives.")
        return
    axes = [sets[0][x], sets[0][y]]
    bounds = analysis.common_bounds(list(frames.values()), axes)
    fronts, clouds, rows = {}, {}, []
    for name, df in frames.items():
        front = pareto_front(df, axes)
        fronts[name] = front
        if cloud:
            done = df[df["state"] == "COMPLETE"]
            clouds[name] = analysis.thin(done.dropna(subset=[x, y]), [x, y], 2000)
        info = df.attrs.get("archlab") or {}
        rows.append({
            "study": name, "sampler": info.get("sampler"), "complete": int((df["state"] == "COMPLETE").sum()),
            "front size": len(front),
            "hypervolume (common scale)": hypervolume(df, objectives=axes, bounds=bounds) if bounds else 0.0,
            "hypervolume (own scale)": hypervolume(df, objectives=axes) if len(front) else 0.0,
        })
    st.plotly_chart(figures.fronts_figure(fronts, axes, clouds), key="cmp_fig", config={"displaylogo": False})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "hypervolume (common scale)": st.column_config.NumberColumn(format="%.4f"),
        "hypervolume (own scale)": st.column_config.NumberColumn(format="%.4f")})
    st.caption("Common scale: each objective scaled by the best and worst feasible values over all chosen studies "
               "(reference 1.1), so a larger number is a better front.")


with ui.friendly():
    _page()
