"""Under Streamlit's AppTest: the access token gate (nothing but a request for the token without
it), and user data (study, objective, constraint, parameter names, attributes) shown as text."""

from __future__ import annotations

import json
import re
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


# --- user data is text ---------------------------------------------------------------------------

#: a study name that Markdown would turn into an external image and a link
PAYLOAD = "![x](http://127.0.0.1:9/x.png) [link](http://evil)"
#: names and values in every other place a study carries text, Markdown and HTML alike
HOSTILE = {
    "objective": "![o](http://127.0.0.1:9/o.png) [o](http://evil/o)",
    "objective2": "lat <a href='http://evil/a'>ms</a>",
    "constraint": "[c](http://evil/c)",
    "param": "[p](http://evil/p)",
    "values": ("<a href='http://evil/v'>v</a>", "![v](http://127.0.0.1:9/v.png)"),
    "metric": "[m](http://evil/m)",
    "sampler": "[s](http://evil/s) :red[red]",
    "experiment": "![e](http://127.0.0.1:9/e.png) $x^2$",
}
#: what must never become a link target or an image source
BAD_URLS = ("evil", "127.0.0.1:9")


def make_hostile_study(path: Path, n_trials: int = 12) -> str:
    """An SQLite study whose every user-given string is Markdown/HTML that loads or links."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    h = HOSTILE
    objectives = [{"name": h["objective"], "direction": "minimize"}, {"name": h["objective2"], "direction": "minimize"}]
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name=PAYLOAD, directions=["minimize", "minimize"])
    study.set_user_attr("archlab", {"version": "test", "objectives": objectives, "constraints": {h["constraint"]: 0.5},
                                    "sampler": h["sampler"], "experiment": h["experiment"]})
    dists = {h["param"]: CategoricalDistribution(h["values"]), "x": FloatDistribution(0.0, 1.0)}
    for i in range(n_trials):
        params = {h["param"]: h["values"][i % 2], "x": i / n_trials}
        arch = json.dumps(params)
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[i / n_trials, 1.0 - (i / n_trials) ** 2],
                                     params=params, distributions=dists, constraints={h["constraint"]: i / n_trials - 0.5},
                                     user_attrs={"arch": arch, "metrics": {h["metric"]: float(i)}}))
    return url


def _strings(v: object) -> list[str]:
    """Every string inside a decoded JSON value."""
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


_CODE_SPAN = re.compile(r"(`+)( ?)(.+?)\2\1(?!`)")


def _visible(markdown: str) -> str:
    """What Markdown shows for text in code spans (the fences and their padding dropped)."""
    return _CODE_SPAN.sub(lambda m: m.group(3), markdown)


def _outside_code(markdown: str) -> str:
    """``markdown`` without its code spans: the part a Markdown renderer interprets."""
    return _CODE_SPAN.sub("", markdown)


def _markdown_bodies(at: AppTest) -> list[str]:
    """The Markdown sources the page sent: texts, messages, headings and widget/metric labels."""
    out = []
    for node in [*at.main, *at.sidebar]:
        proto = node.proto
        for field in ("body", "label"):
            value = getattr(proto, field, None)
            if isinstance(value, str) and value:
                out.append(value)
    for kind in ("markdown", "caption", "subheader", "header", "title", "error", "warning", "info", "success"):
        out += [e.value for e in getattr(at, kind)]
    out += [m.label for m in at.metric] + [s.label for s in at.slider]
    return out


def test_user_data_is_shown_as_literal_text_on_every_page(monkeypatch, tmp_path):
    url = make_hostile_study(tmp_path / "hostile.db")
    at = _run(monkeypatch, url, None)
    assert at.selectbox(key="study").options == [PAYLOAD]  # option labels are plain text
    assert PAYLOAD in at.dataframe[0].value["study_name"].tolist()
    shown = {_visible(b) for b in _markdown_bodies(at)}
    assert f"Study {PAYLOAD}" in shown
    assert any(HOSTILE["sampler"] in s and HOSTILE["experiment"] in s and HOSTILE["constraint"] in s for s in shown)
    pages = {"pareto": [HOSTILE["constraint"] + " ≤"], "detail": [HOSTILE["objective"] + " ↓", HOSTILE["objective2"] + " ↓"],
             "importance": [], "hypervolume": [], "compare": [], "live": []}
    specs = []
    for page, expected in pages.items():
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and not at.error, (page, [e.value for e in at.error])
        bodies = _markdown_bodies(at)
        for text in expected:
            assert text in {_visible(b) for b in bodies}, (page, text)
        for body in bodies:  # nothing a Markdown renderer could read as a link, an image or HTML
            assert not re.search(r"[\[\]<>!]|http|www", _outside_code(body)), (page, body)
        specs += [c.proto.spec for c in at.get("plotly_chart")]
    assert specs
    texts = [t for spec in specs for t in _strings(json.loads(spec))]
    # plotly draws <a href> in titles, names, ticks and hover text: only entities may reach it
    assert not [t for t in texts if re.search(r"<\s*(a|img)\b", t, re.I)]
    assert any("&lt;a href='http://evil/a'&gt;ms&lt;/a&gt;" in t for t in texts)  # the objective, escaped
    detail = at.switch_page("views/detail.py").run()
    params = detail.dataframe[0].value
    assert set(params["parameter"]) >= {HOSTILE["param"]} and set(params["value"]) & set(HOSTILE["values"])
