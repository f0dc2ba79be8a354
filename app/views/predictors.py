"""Predictor quality (parity plots and scores from runs/<name>/predictors/*.json) and supernet
ranking consistency (runs/<name>/rank/report.json), when those files exist."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from archlab.app import cache, figures, ui

ctx = ui.context()
st.title("Predictors & ranking")


def _page() -> None:
    if ctx.error:
        st.error(ui.esc(ctx.error), icon=":material/error:")
        return
    if not ctx.run_dir:
        st.info("This storage is not inside a run directory (`runs/<name>/study.db`), so there are no predictor "
                "or ranking files to show. Start the app with `archlab app runs/` to see them.")
        return
    files = cache.run_files(ctx.run_dir)
    for err in files["errors"]:
        st.warning(f"Could not read {ui.esc(err)}")
    preds = files["predictors"]
    st.subheader("Predictors")
    if not preds:
        st.caption(f"No predictors in {ui.esc(ctx.run_dir + '/predictors/')} (run `archlab predictor fit`).")
    for name, doc in preds.items():
        scores = doc.get("scores") or {}
        model = (doc.get("model") or {}).get("model", "")
        st.markdown(f"**{ui.esc(name)}** · {ui.esc(doc.get('kind', ''))} {ui.esc(model)} · trained on "
                    f"{ui.esc(doc.get('n_train', '?'))} rows")
        cols = st.columns(max(1, len(scores)))
        for c, (k, v) in zip(cols, scores.items()):
            c.metric(ui.esc(k), ui.fmt(v) if isinstance(v, (int, float)) else str(v))
        hold = doc.get("holdout") or {}
        if hold.get("y_true") and hold.get("y_pred"):
            st.plotly_chart(figures.parity_figure(hold["y_true"], hold["y_pred"], f"{name}: holdout parity",
                                                  doc.get("unit", "")), key=f"parity.{name}",
                            config={"displaylogo": False})
        else:
            st.caption("No holdout stored in this predictor file.")
    st.subheader("Supernet ranking")
    report = files["rank"]
    if not report:
        st.caption(f"No ranking report at {ui.esc(ctx.run_dir + '/rank/report.json')} (run `archlab rank`).")
        return
    rows = [{"supernet": mode, **{k: v for k, v in sn.items() if not isinstance(v, dict)}}
            for mode, sn in (report.get("supernets") or {}).items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.plotly_chart(figures.rank_figure(report), key="rank_fig", config={"displaylogo": False})


with ui.friendly():
    _page()
