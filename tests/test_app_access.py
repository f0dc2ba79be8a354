"""Under Streamlit's AppTest: the access token gate (nothing but a request for the token without
it), and user data (study, objective, constraint, parameter names, attributes) shown as text."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from archlab.app.access import ENV_TOKEN, QUERY_KEY
from archlab.app.demo import make_demo_study

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
TOKEN = "s3cret-token-for-tests-0123"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("access") / "study.db"
    make_demo_study(path, "private-study", 30, seed=2)
    return path


def _run(monkeypatch, target, token: str | None, query: dict[str, str] | None = None) -> AppTest:
    monkeypatch.setenv("ARCHLAB_APP_TARGET", str(target))
    if token is None:
        monkeypatch.delenv(ENV_TOKEN, raising=False)
    else:
        monkeypatch.setenv(ENV_TOKEN, token)
    at = AppTest.from_file(MAIN, default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown_text(at: AppTest) -> str:
    """Every string the script sent to the page (element protos), for 'is X shown anywhere'."""
    return "\n".join(str(node.proto) for node in at.main) + "\n".join(str(node.proto) for node in at.sidebar)


@pytest.mark.parametrize("query", [{}, {QUERY_KEY: "wrong"}, {QUERY_KEY: TOKEN[:-1]}, {"study": "private-study"}])
def test_without_the_token_the_page_shows_only_the_request(monkeypatch, store, query):
    at = _run(monkeypatch, store, TOKEN, query)
    assert [e.value for e in at.error] == ["access token required: open the address `archlab app` printed as it "
                                           "started (it ends in `?token=...`)."]
    assert not at.selectbox and not at.dataframe and not at.get("plotly_chart") and not at.sidebar.children
    shown = _shown_text(at)
    assert "private-study" not in shown and TOKEN not in shown and str(store) not in shown


def test_the_token_opens_every_page_and_stays_in_the_url(monkeypatch, store):
    at = _run(monkeypatch, store, TOKEN, {QUERY_KEY: TOKEN})
    assert not at.error and at.selectbox(key="study").value == "private-study"
    assert at.query_params[QUERY_KEY] == TOKEN
    for page in ("pareto", "detail", "live"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and not any("access token" in e.value for e in at.error)
        assert at.get("plotly_chart") or at.dataframe
    assert at.query_params[QUERY_KEY] == TOKEN
    at.query_params.clear()  # a session that gave the token keeps access when the URL loses it
    at.run()
    assert not at.error and at.query_params[QUERY_KEY] == TOKEN


def test_no_token_configured_means_an_open_page(monkeypatch, store):
    at = _run(monkeypatch, store, None)
    assert not at.error and at.selectbox(key="study").value == "private-study"
    assert QUERY_KEY not in at.query_params
