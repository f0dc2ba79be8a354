"""Parameter importance for a chosen objective (optuna.importance) and a parallel-coordinates view."""

from __future__ import annotations

import streamlit as st

from archlab.app import analysis, cache, figures, ui
from archlab.app.importance import EVALUATORS

ctx = ui.context()
st.title("Parameter importance")


def _page() -> None:
    df = ui.study_trials(ctx)
    if df is None or (done := ui.completed(df, ctx.study)) is None:
        return
    objs = df.attrs.get("objectives") or []
    names = [o["name"] for o in objs]
    c1, c2, c3 = st.columns([2, 2, 1])
    objective = c1.selectbox("Objective", names, key=f"imp_obj.{ctx.study}")
    evaluator = c2.selectbox("Evaluator", list(EVALUATORS), key="imp_eval")
    max_trials = c3.number_input("Max trials", 50, 50_000, 1000, step=250, key="imp_max",
                                 help="Larger studies use a seeded sample of this many completed trials")
    if len(done) < 2:
        st.info("Importance needs at least two completed trials.")
    else:
        with ui.friendly("Importance could not be computed: "):
            imp = cache.importance(*ui.selected(ctx), names.index(objective), str(evaluator), int(max_trials))
            st.plotly_chart(figures.importance_figure(imp, f"{evaluator} importance for {objective}"),
                            key="imp_fig", config={"displaylogo": False})
    st.subheader("Parallel coordinates")
    params = analysis.arch_params(df)
    top = [p for p in params if p.count(".") == 1]
    dims = st.multiselect("Axes", params + [c for c in df.columns if c.startswith("metric.")] + names,
                          default=top + names, key=f"par_dims.{ctx.study}")
    colour = st.selectbox("Colour by", names, index=names.index(objective), key=f"par_col.{ctx.study}")
    if dims:
        rows = done.dropna(subset=[colour])
        rows = rows.sample(3000, random_state=0) if len(rows) > 3000 else rows
        st.plotly_chart(figures.parallel_figure(rows, dims, colour), key="par_fig", config={"displaylogo": False})
        st.caption(f"{len(rows):,} completed trials" + (" (seeded sample)" if len(done) > 3000 else ""))


with ui.friendly():
    _page()
