"""Hypervolume over trials, for one study or several overlaid (on one common scale)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from archlab.app import analysis, cache, figures, ui

ctx = ui.context()
st.title("Hypervolume over trials")


def _page() -> None:
    if ui.study_trials(ctx) is None:
        return
    chosen = st.multiselect("Studies", list(ctx.studies), default=[ctx.study], key="hv_studies")
    if not chosen:
        st.info("Pick at least one study.")
        return
    frames = {n: cache.trials(ui.selected(ctx)[0], n) for n in chosen}
    objs = frames[chosen[0]].attrs.get("objectives") or []
    same = all([o["name"] for o in f.attrs.get("objectives") or []] == [o["name"] for o in objs]
               for f in frames.values())
    common = len(chosen) > 1 and same and st.toggle(
        "Common scale", value=True, key="hv_common",
        help="Normalise every study with the best and worst values over all chosen studies, so the curves compare")
    bounds = analysis.common_bounds(list(frames.values()), objs) if common else None
    histories, rows = {}, []
    for name, df in frames.items():
        if not (df["state"] == "COMPLETE").any():
            st.warning(f"Study **{ui.esc(name)}** has no completed trials; left out.")
            continue
        h = cache.history(ui.selected(ctx)[0], name, bounds)
        histories[name] = h
        rows.append({"study": name, "complete trials": int((df["state"] == "COMPLETE").sum()),
                     "final hypervolume": float(h["hypervolume"].iloc[-1]) if len(h) else 0.0})
    if not histories:
        return
    if len(chosen) > 1 and not same:
        st.caption("The chosen studies have different objectives: each curve is on its own scale.")
    st.plotly_chart(figures.history_figure(histories), key="hv_fig", config={"displaylogo": False})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"final hypervolume": st.column_config.NumberColumn(format="%.4f")})


with ui.friendly():
    _page()
