"""Studies: every study in the storage with trial counts, objectives, times, front size and hypervolume."""

from __future__ import annotations

import streamlit as st

from archlab.app import cache, ui

ctx = ui.context()
st.title("Studies")
with ui.friendly():
    if ctx.error:
        st.error(ui.esc(ctx.error), icon=":material/error:")
    elif ctx.url is None:
        st.info("No storage found. Start the app with `archlab app --storage URL` or `archlab app RUNS_DIR` "
                "(a runs directory: every `*/study.db` in it).")
    elif not ctx.studies:
        st.info(f"The storage **{ui.esc(ctx.label)}** holds no studies yet. Run `archlab search EXPERIMENT.py` to create one.")
    else:
        table = cache.studies(ctx.url)
        st.caption(f"{len(table)} studies in {ui.esc(ctx.label)} · hypervolume normalised per study "
                   "(best value 0, worst 1, reference 1.1 on every objective)")
        shown = table.assign(
            objectives=[", ".join(f"{o} {'↓' if d == 'minimize' else '↑'}" for o, d in zip(objs, dirs))
                        for objs, dirs in zip(table["objectives"], table["directions"])]
        ).drop(columns=["directions"])
        event = st.dataframe(
            shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="studies_table",
            column_config={
                "study_name": st.column_config.TextColumn("study", pinned=True),
                "n_trials": st.column_config.NumberColumn("trials"),
                "n_complete": st.column_config.NumberColumn("complete"),
                "n_fail": st.column_config.NumberColumn("failed"),
                "n_running": st.column_config.NumberColumn("running"),
                "n_pruned": st.column_config.NumberColumn("pruned"),
                "datetime_start": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
                "last_update": st.column_config.DatetimeColumn("last update", format="YYYY-MM-DD HH:mm"),
                "front_size": st.column_config.NumberColumn("front"),
                "hypervolume": st.column_config.ProgressColumn("hypervolume", format="%.4f", min_value=0.0,
                                                               max_value=1.21),
            },
        )
        rows = event.selection.rows if event is not None else []
        if rows:
            name = shown.iloc[rows[0]]["study_name"]
            if name != ctx.study:
                ui.pick_study(name)
        cur = table[table["study_name"] == ctx.study]
        if len(cur):
            r = cur.iloc[0]
            st.subheader(f"Study {ui.esc(ctx.study)}")
            cols = st.columns(5)
            cols[0].metric("trials", int(r["n_trials"]))
            cols[1].metric("complete", int(r["n_complete"]))
            cols[2].metric("failed", int(r["n_fail"]))
            cols[3].metric("front size", int(r["front_size"]))
            cols[4].metric("hypervolume", f"{r['hypervolume']:.4f}")
            if r["n_complete"] == 0 and r["n_trials"] > 0:
                st.warning(f"Every trial of **{ui.esc(ctx.study)}** failed or has not finished; there is no front yet.")
            df = cache.trials(*ui.selected(ctx))
            info = df.attrs.get("archlab") or {}
            bits = [f"sampler **{ui.esc(info.get('sampler'))}**" if info.get("sampler") else "",
                    f"experiment **{ui.esc(info.get('experiment'))}**" if info.get("experiment") else "",
                    ("constraints " + ", ".join(f"{ui.esc(k)} ≤ {ui.esc(ui.fmt(v))}"
                                                for k, v in (df.attrs.get('constraints') or {}).items()))
                    if df.attrs.get("constraints") else ""]
            st.markdown(" · ".join(b for b in bits if b) or "Not an archlab study (no `archlab` attributes).")
            failed = df[df["state"] == "FAIL"]
            if len(failed):
                with st.expander(f"{len(failed)} failed trials"):
                    st.dataframe(failed[["number", "datetime_start", "duration_s"]], hide_index=True)
