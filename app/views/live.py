"""Live: a running search's new trials appear (auto-refresh that can be switched off)."""

from __future__ import annotations

import streamlit as st

from archlab.app import cache, figures, ui

ctx = ui.context()
st.title("Live")




def _body() -> None:
    with ui.friendly():
        _live()


def _live() -> None:
    df = ui.study_trials(ctx)
    if df is None:
        return
    n, done, fail, running = cache.stamp(*ui.selected(ctx))
    cols = st.columns(5)
    cols[0].metric("trials", n)
    cols[1].metric("complete", done)
    cols[2].metric("running", running)
    cols[3].metric("failed", fail)
    last = df["datetime_complete"].max()
    cols[4].metric("last finished", "—" if last != last else last.strftime("%H:%M:%S"))
    if done:
        h = cache.history(*ui.selected(ctx))
        st.plotly_chart(figures.history_figure({ui.selected(ctx)[1]: h}, height=320), key="live_hv",
                        config={"displaylogo": False})
    recent = df.sort_values("number", ascending=False).head(25)
    objs = [o["name"] for o in df.attrs.get("objectives") or []]
    st.subheader("Latest trials")
    st.dataframe(recent[["number", "state", "datetime_start", "duration_s", *objs, "feasible"]], hide_index=True,
                 width="stretch")


def _page() -> None:
    c1, c2 = st.columns([1, 3])
    auto = c1.toggle("Auto-refresh", value=True, key="live_auto")
    every = c2.select_slider("Every", options=[2, 5, 10, 30, 60], value=5, key="live_every",
                             format_func=lambda s: f"{s} s", disabled=not auto)
    if auto:
        st.fragment(run_every=every)(_body)()
    else:
        _body()


with ui.friendly():
    _page()
