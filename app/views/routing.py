"""Routing: per-layer expert load heatmap and experts-per-token histogram of one architecture,
and router families compared on the Pareto plot (colour by router family)."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from archlab.app import analysis, routing, ui

ctx = ui.context()
st.title("Routing")


def _page() -> None:
    df = ui.study_trials(ctx)
    if df is None:
        return
    done = ui.completed(df, ctx.study)
    if done is None:
        return
    done = done.assign(router_family=routing.router_family(done))
    cols = routing.routing_columns(done)
    if not cols:
        st.info(f"Study **{ctx.study}** has no routing metrics. They are recorded for token-routed (MoE) supernets "
                "when the search's metrics include them: `metrics=archlab.search.objectives.routing_metrics(space)` "
                "with the `inherited` objective.")
    options = analysis.axis_options(done)
    names = [o["name"] for o in options]
    if len(options) >= 2:
        st.subheader("Router families on the Pareto plot")
        c1, c2 = st.columns(2)
        x = c1.selectbox("x", names, index=0, key=f"routing.x.{ctx.study}")
        y = c2.selectbox("y", names, index=1, key=f"routing.y.{ctx.study}")
        xs, ys = x, y  # objective names and metric columns are the trial table's column names
        fig = px.scatter(done, x=xs, y=ys, color="router_family", hover_data=["number"],
                         labels={xs: x, ys: y, "router_family": "router"})
        st.plotly_chart(fig, width="stretch")
    if not cols:
        return
    st.subheader("One architecture")
    numbers = done["number"].tolist()
    number = st.selectbox("Trial", numbers, index=0, key=f"routing.trial.{ctx.study}")
    row = done[done["number"] == number].iloc[0]
    st.caption(f"router: **{row['router_family']}**; " + ", ".join(
        f"{c.removeprefix(routing.PREFIX)} = {ui.fmt(row[c])}" for c in cols if c.count(".") == 2))
    load = routing.load_matrix(row)
    if not load.empty:
        fig = px.imshow(load.values, x=[f"e{j}" for j in load.columns], y=[f"layer {i}" for i in load.index],
                        labels={"color": "token fraction"}, color_continuous_scale="Viridis", aspect="auto",
                        title="Expert load (fraction of tokens per expert)")
        st.plotly_chart(fig, width="stretch")
    hist = routing.experts_histogram(row)
    if not hist.empty:
        long = hist.reset_index().melt(id_vars="layer", var_name="experts", value_name="fraction")
        long["layer"] = long["layer"].map(lambda i: f"layer {i}")
        fig = px.bar(long, x="experts", y="fraction", color="layer", barmode="group",
                     title="Real experts per token (fraction of tokens)")
        st.plotly_chart(fig, width="stretch")


with ui.friendly("routing page: "):
    _page()
