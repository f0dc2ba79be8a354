"""archlab dashboard: the Streamlit entry script (``archlab app`` runs it).

The storage comes from ``$ARCHLAB_APP_TARGET`` (set by ``archlab app``): a storage URL, an
SQLite file, a run directory or a runs directory (every ``*/study.db``). The sidebar picks one
of those storages (a visitor never names a URL or a file) and the study; the pages read them
from ``archlab.app.ui.context()``. When ``$ARCHLAB_APP_TOKEN`` is set, nothing but a request for
the access token is shown until the page's URL carries it (``?token=...``).
"""

from __future__ import annotations

import os

import streamlit as st

from archlab.app import access, cache, sources, ui

st.set_page_config(page_title="archlab", page_icon=":material/hub:", layout="wide")


def _require_token() -> None:
    """Stop the script (showing only a request for the token) unless this session has given the
    server's access token; keep it in the URL so reloads and shared links still work."""
    expected = os.environ.get(access.ENV_TOKEN)
    if not expected:
        return
    if not st.session_state.get("_archlab_access") and not access.token_ok(
            st.query_params.get(access.QUERY_KEY), expected):
        st.error("access token required: open the address `archlab app` printed as it started "
                 "(it ends in `?token=...`).", icon=":material/lock:")
        st.stop()
    st.session_state["_archlab_access"] = True
    st.query_params[access.QUERY_KEY] = expected


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
            src = found[labels.index(pick) if pick is not None else 0]
        elif found:
            src = found[0]
            st.caption(f"Storage: {ui.esc(src.label)}")
        if src is None:
            return ui.Context(None, "", None, None, ())
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
        study = st.selectbox("Study", names, key="study")  # never None: names is not empty
        if study is not None:
            st.query_params["study"] = study
        return ui.Context(src.url, src.label, src.run_dir, study, tuple(names))


_require_token()
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
