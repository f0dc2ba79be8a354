"""archlab dashboard: the Streamlit entry script (``archlab app`` runs it).

The storage comes from ``$ARCHLAB_APP_TARGET`` (set by ``archlab app``): a storage URL, an
SQLite file, a run directory or a runs directory (every ``*/study.db``). The sidebar picks the
storage and the study; the pages read them from ``archlab.app.ui.context()``.
"""

from __future__ import annotations

import streamlit as st

from archlab.app import cache, sources, ui
from archlab.search.storage import storage_url

st.set_page_config(page_title="archlab", page_icon=":material/hub:", layout="wide")


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sidebar() -> ui.Context:
    _quiet_optuna()
    found = sources.find_sources(None)
    with st.sidebar:
        st.markdown("### :material/hub: archlab")
        src = None
        if len(found) > 1:
            labels = [s.label for s in found]
            pick = st.selectbox("Run", labels, key="source", help="Every runs/*/study.db found")
            src = found[labels.index(pick)]
        elif found:
            src = found[0]
            st.caption(f"Storage: `{src.label}`")
        with st.expander("Open another storage", expanded=src is None):
            custom = st.text_input("Storage URL or path", key="custom_url",
                                   placeholder="sqlite:///runs/x/study.db or postgresql+psycopg2://…").strip()
        error = None
        if custom:
            try:
                url = storage_url(custom)
                src = sources.Source(url, custom, sources._run_dir_of(url))
            except Exception as exc:
                error = str(exc)
        if src is None:
            return ui.Context(None, "", None, None, (), error)
        try:
            names = cache.study_names(src.url)
        except Exception as exc:
            cache.storage.clear()
            return ui.Context(None, src.label, src.run_dir, None, (), str(exc))
        pending = st.session_state.pop(ui.PENDING_STUDY, None)
        if pending in names:
            st.session_state["study"] = pending
        if not names:
            return ui.Context(src.url, src.label, src.run_dir, None, ())
        if st.session_state.get("study") not in names:
            wanted = st.query_params.get("study")
            st.session_state["study"] = wanted if wanted in names else sources.default_study(names)
        study = st.selectbox("Study", names, key="study")
        st.query_params["study"] = study
        return ui.Context(src.url, src.label, src.run_dir, study, tuple(names), error)


ctx = _sidebar()
st.session_state[ui.CTX_KEY] = ctx
P = ui.PAGES
nav = st.navigation(
    {
        "Results": [
            st.Page(P["studies"], title="Studies", icon=":material/table_rows:", default=True),
            st.Page(P["pareto"], title="Pareto explorer", icon=":material/scatter_plot:"),
            st.Page(P["hypervolume"], title="Hypervolume", icon=":material/show_chart:"),
            st.Page(P["compare"], title="Compare studies", icon=":material/compare_arrows:"),
        ],
        "Architectures": [
            st.Page(P["detail"], title="Architecture detail", icon=":material/account_tree:"),
            st.Page(P["importance"], title="Parameter importance", icon=":material/tune:"),
            st.Page(P["routing"], title="Routing", icon=":material/alt_route:"),
        ],
        "Run": [
            st.Page(P["predictors"], title="Predictors & ranking", icon=":material/insights:"),
            st.Page(P["live"], title="Live", icon=":material/monitor_heart:"),
        ],
    }
)
nav.run()
