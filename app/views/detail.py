"""Architecture detail: parameters, per-layer picture, objectives, predicted vs measured latency,
a diff against another trial, and export (the `archlab export` command and the JSON)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from archlab.app import analysis, cache, figures, ui
from archlab.search.storage import sqlite_file

ctx = ui.context()
st.title("Architecture detail")


def _arch(row: pd.Series) -> dict:
    text = row.get("arch")
    if isinstance(text, str) and text:
        return json.loads(text)
    return {str(c).removeprefix("arch."): v for c, v in row.items() if str(c).startswith("arch.") and pd.notna(v)}


def _bundled_examples() -> set[str]:
    """Names of the example experiments shipped with archlab (file names in its examples folder;
    nothing is imported from there)."""
    import archlab

    return {p.stem for p in (Path(archlab.__file__).parent / "examples").glob("*.py") if not p.stem.startswith("_")}


def _page() -> None:
    df = ui.study_trials(ctx)
    if df is None or (done := ui.completed(df, ctx.study)) is None:
        return
    numbers = done["number"].tolist()
    key = f"trial.{ctx.study}"
    pending = st.session_state.pop(ui.PENDING_TRIAL, None)
    if pending is not None and pending in numbers:
        st.session_state[key] = pending
    if st.session_state.get(key) not in numbers:
        wanted = st.query_params.get("trial")
        front = cache.explorer(*ui.selected(ctx), df.attrs["objectives"][:2], {}).front \
            if len(df.attrs.get("objectives") or []) >= 2 else done
        first = int(wanted) if wanted is not None and wanted.isdigit() and int(wanted) in numbers else \
            int(front["number"].iloc[0] if len(front) else numbers[0])
        st.session_state[key] = first
    c1, c2 = st.columns([1, 3])
    number = c1.selectbox("Trial", numbers, key=key)
    st.query_params["trial"] = str(number)
    row = df[df["number"] == number].iloc[0]
    arch = _arch(row)
    space = analysis.space_of(df)
    summary = cache.summaries(*ui.selected(ctx), [number])[0]
    c2.markdown(f"**{ui.esc(summary)}**")
    objs = df.attrs.get("objectives") or []
    cols = st.columns(max(1, len(objs)) + 1)
    for c, o in zip(cols, objs):
        c.metric(f"{ui.esc(o['name'])} {'↓' if o['direction'] == 'minimize' else '↑'}", ui.fmt(row[o["name"]]))
    cols[-1].metric("feasible", "yes" if row["feasible"] else "no")
    metrics = {c.removeprefix("metric."): row[c] for c in df.columns if c.startswith("metric.") and pd.notna(row[c])}
    cons = {c.removeprefix("constraint."): row[c] for c in df.columns if c.startswith("constraint.") and pd.notna(row[c])}

    left, right = st.columns([1, 2])
    with left:
        st.subheader("Parameters")
        flat = analysis.flat_arch(arch)
        st.dataframe(pd.DataFrame({"parameter": list(flat), "value": [str(v) for v in flat.values()]}),
                     hide_index=True, width="stretch", height=min(420, 36 * (len(flat) + 1)))
        if metrics:
            st.subheader("Metrics")
            st.dataframe(pd.DataFrame({"metric": list(metrics), "value": [ui.fmt(v) for v in metrics.values()]}),
                         hide_index=True, width="stretch")
        if cons:
            bounds = df.attrs.get("constraints") or {}
            st.dataframe(pd.DataFrame({"constraint": list(cons),
                                       "value − bound": [ui.fmt(v) for v in cons.values()],
                                       "bound": [ui.fmt(bounds.get(k, "")) for k in cons],
                                       "ok": ["✓" if v <= 0 else "✗" for v in cons.values()]}),
                         hide_index=True, width="stretch")
    with right:
        st.subheader("Per layer")
        other_number = st.selectbox("Compare with trial", ["none", *[n for n in numbers if n != number]],
                                    key=f"other.{ctx.study}")
        other = None if other_number == "none" else df[df["number"] == other_number].iloc[0]
        layers = analysis.per_layer_rows(arch)
        if len(layers):
            other_layers = analysis.per_layer_rows(_arch(other)) if other is not None else None
            st.plotly_chart(figures.layers_figure(layers, other_layers, (f"trial {number}", f"trial {other_number}")),
                            key="layers_fig", config={"displaylogo": False})
        else:
            st.caption("This architecture has no per-layer blocks.")
        if other is not None:
            st.subheader(f"Difference: trial {number} vs {other_number}")
            a, b = analysis.flat_arch(arch), analysis.flat_arch(_arch(other))
            keys = list(dict.fromkeys([*a, *b]))
            diff = [(k, a.get(k, "—"), b.get(k, "—")) for k in keys if a.get(k) != b.get(k)]
            for o in objs:
                diff.append((o["name"], ui.fmt(row[o["name"]]), ui.fmt(other[o["name"]])))
            st.dataframe(pd.DataFrame(diff, columns=["", f"trial {number}", f"trial {other_number}"]).astype(str),
                         hide_index=True, width="stretch")
    pair = analysis.latency_pair([c for c in df.columns if c.startswith("metric.")] + [o["name"] for o in objs])
    if pair is not None:
        st.subheader("Predicted vs measured latency")
        p, m = pair
        both = done[[p, m]].astype(float).dropna()
        if pd.notna(row[p]) and pd.notna(row[m]):
            left, right = st.columns(3)[:2]
            left.metric("predicted", f"{row[p]:.4g} ms")
            right.metric("measured", f"{row[m]:.4g} ms", delta=f"{(row[p] - row[m]) / row[m] * 100:+.1f} % error",
                     delta_color="off")
        sample = both.sample(min(len(both), 3000), random_state=0) if len(both) > 3000 else both
        hl = (float(row[m]), float(row[p])) if pd.notna(row[p]) and pd.notna(row[m]) else None
        st.plotly_chart(figures.parity_figure(sample[m], sample[p], f"{len(both)} trials with both", "ms", hl),
                        key="latency_parity", config={"displaylogo": False})
    st.subheader("Export")
    url = ctx.url or ""
    path = sqlite_file(url)  # an SQLite study is named by its file
    url = str(path) if path is not None else url
    # the experiment is the user's to give: a study (data) never names code to run, so only a
    # bundled example's name is filled in; any other recorded file is shown as text to compare
    recorded = str((df.attrs.get("archlab") or {}).get("experiment_file") or "")
    bundled = recorded if recorded.isidentifier() and recorded in _bundled_examples() else None
    study = ctx.study or ""
    cmd = (f"archlab export {shlex.quote(url)} {shlex.quote(study)} {number} "
           f"{shlex.quote(f'exported/{ctx.study}-trial{number}')} --experiment {bundled or 'EXPERIMENT.py'}")
    st.code(cmd, language="bash")
    if not bundled:
        st.caption("Replace EXPERIMENT.py with the experiment file the search ran; export checks its hash and "
                   "space against the study." + (" The study says it ran:" if recorded else ""))
        if recorded:
            st.text(recorded)
    arch_json = json.dumps(arch, indent=2, sort_keys=True)
    st.download_button("Download architecture JSON", arch_json, file_name=f"{ctx.study}-trial{number}.json",
                       mime="application/json", icon=":material/download:")
    if space is None:
        st.caption("The study records no search space; parameters come from the trial's flat params.")


with ui.friendly():
    _page()
