"""Dashboard pages under Streamlit's AppTest, asserting on the data they show."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from archlab.app import analysis, figures
from archlab.app.demo import make_demo_study
from archlab.app.ui import PENDING_TRIAL
from archlab.search.results import (
    hypervolume,
    hypervolume_history,
    list_studies,
    load_trials,
    pareto_front,
)

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
AXES = [{"name": "error", "direction": "minimize"}, {"name": "latency_ms", "direction": "minimize"}]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("app") / "runs" / "demo" / "study.db"
    path.parent.mkdir(parents=True)
    make_demo_study(path, "other", 120, seed=5)
    make_demo_study(path, "demo3", 150, seed=2, n_objectives=3)
    make_demo_study(path, "allfail", 4, seed=3, only_failed=True)
    make_demo_study(path, "demo", 240, seed=1)
    return path


def _app(monkeypatch, target: str | Path, study: str | None = None, page: str | None = None) -> AppTest:
    monkeypatch.setenv("ARCHLAB_APP_TARGET", str(target))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    if study is not None:
        at.selectbox(key="study").set_value(study).run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _decode(v):
    """Plotly's typed arrays (``{"dtype", "bdata"}``, base64) as plain lists, recursively."""
    import base64

    if isinstance(v, dict):
        if "bdata" in v and "dtype" in v:
            arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
            if "shape" in v:
                arr = arr.reshape([int(x) for x in str(v["shape"]).split(",")])
            return arr.tolist()
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def _spec(at: AppTest, i: int = 0) -> dict:
    return _decode(json.loads(at.get("plotly_chart")[i].proto.spec))


def _trace(spec: dict, name: str) -> dict | None:
    return next((t for t in spec["data"] if t.get("name") == name), None)


def test_studies_page_shows_the_results_api_table(monkeypatch, store):
    at = _app(monkeypatch, store.parent.parent)  # a runs directory
    assert not at.error
    expected = list_studies(f"sqlite:///{store}")
    shown = at.dataframe[0].value
    assert list(shown["study_name"]) == list(expected["study_name"])
    assert list(shown["front_size"]) == list(expected["front_size"])
    np.testing.assert_allclose(shown["hypervolume"], expected["hypervolume"])
    assert list(shown["n_fail"]) == list(expected["n_fail"])
    # the default study is the last one; its counts are shown as metrics
    assert at.selectbox(key="study").value == "demo"
    metrics = {m.label: m.value for m in at.metric}
    row = expected.set_index("study_name").loc["demo"]
    assert metrics["front size"] == str(row["front_size"]) and metrics["trials"] == str(row["n_trials"])


def test_pareto_front_points_equal_the_api_front(monkeypatch, store):
    at = _app(monkeypatch, store, "demo", "pareto")
    df = load_trials(f"sqlite:///{store}", "demo")
    front = pareto_front(df, AXES)
    spec = _spec(at)
    tr = _trace(spec, figures.FRONT)
    assert len(tr["x"]) == len(front) > 2
    assert sorted(tr["customdata"]) == sorted(front["number"].tolist())
    np.testing.assert_allclose(tr["x"], front["error"])
    dominated = _trace(spec, figures.DOMINATED)
    infeasible = _trace(spec, figures.INFEASIBLE)
    done = df[df["state"] == "COMPLETE"]
    assert len(dominated["x"]) == int(done["feasible"].sum()) - len(front)
    assert len(infeasible["x"]) == int((~done["feasible"]).sum())
    assert "n_layer=" in tr["hovertext"][0]  # short arch summary on hover
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["front size"] == str(len(front))
    assert float(metrics["hypervolume"]) == pytest.approx(hypervolume(df, objectives=AXES), abs=1e-4)


def test_constraint_slider_recomputes_the_front(monkeypatch, store):
    at = _app(monkeypatch, store, "demo", "pareto")
    df = load_trials(f"sqlite:///{store}", "demo")
    before = _trace(_spec(at), figures.FRONT)
    # tighten latency: the front of the trials that also meet the new bound
    at.slider(key="bound.demo.latency_ms").set_value(1.5).run()
    tight = df.assign(feasible=df["feasible"] & (df["latency_ms"] <= 1.5))
    after = _trace(_spec(at), figures.FRONT)
    expected = pareto_front(tight, AXES)
    assert sorted(after["customdata"]) == sorted(expected["number"].tolist())
    assert len(after["x"]) < len(before["x"])
    assert max(after["y"]) <= 1.5
    # loosen it: trials with latency up to 6 ms count again (macs bound unchanged)
    at.slider(key="bound.demo.latency_ms").set_value(6.0).run()
    loose = df.assign(feasible=(df["state"] == "COMPLETE") & (df["latency_ms"] <= 6.0)
                      & (df["metric.macs"] <= 8e7))
    wide = _trace(_spec(at), figures.FRONT)
    assert sorted(wide["customdata"]) == sorted(pareto_front(loose, AXES)["number"].tolist())
    assert max(wide["y"]) > 2.5
    assert {m.label: m.value for m in at.metric}["front size"] == str(len(pareto_front(loose, AXES)))


def test_3d_front_and_colour_by_parameter(monkeypatch, store):
    at = _app(monkeypatch, store, "demo3", "pareto")
    at.toggle(key="three.demo3").set_value(True).run()
    at.selectbox(key="colour.demo3").set_value("arch.d_model").run()
    df = load_trials(f"sqlite:///{store}", "demo3")
    front = pareto_front(df)  # all three objectives
    tr = _trace(_spec(at), figures.FRONT)
    assert tr["type"] == "scatter3d"
    assert sorted(tr["customdata"]) == sorted(front["number"].tolist())
    by_number = df.set_index("number")["arch.d_model"]
    assert tr["marker"]["color"] == [float(by_number[n]) for n in tr["customdata"]]


def test_selected_trial_opens_in_detail(monkeypatch, store):
    at = _app(monkeypatch, store, "demo")
    df = load_trials(f"sqlite:///{store}", "demo")
    other, number = df[df["state"] == "COMPLETE"]["number"].iloc[[0, 7]].tolist()
    at.session_state[PENDING_TRIAL] = number
    at.switch_page("views/detail.py").run()
    assert not at.exception
    assert at.selectbox(key="trial.demo").value == number
    row = df.set_index("number").loc[number]
    arch = json.loads(row["arch"])
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["`error` ↓"]) == pytest.approx(row["error"], rel=1e-3)
    # per-layer picture: one bar per layer with the arch's widths
    layers = _spec(at)
    ffn = next(t for t in layers["data"] if t["type"] == "bar" and t["y"] == [float(x["ffn"]) for x in arch["layers"]])
    assert len(ffn["x"]) == arch["n_layer"]
    # export command and JSON download
    code = at.code[0].value
    assert code.startswith(f"archlab export {store} demo {number} ")
    assert code.endswith(" --experiment EXPERIMENT.py")  # the user names the experiment, never the study
    assert at.get("download_button")
    # predicted vs measured latency is shown (both metrics exist in the demo study)
    assert any(m.label == "measured" for m in at.metric)
    # difference against another trial
    at.selectbox(key="other.demo").set_value(other).run()
    diff = at.dataframe[-1].value
    flat_a = analysis.flat_arch(arch)
    flat_b = analysis.flat_arch(json.loads(df.set_index("number").loc[other, "arch"]))
    changed = {k for k in {*flat_a, *flat_b} if flat_a.get(k) != flat_b.get(k)}
    assert changed <= set(diff.iloc[:, 0]) and "error" in set(diff.iloc[:, 0])


def test_hypervolume_and_compare_pages(monkeypatch, store):
    url = f"sqlite:///{store}"
    at = _app(monkeypatch, store, "demo", "hypervolume")
    df = load_trials(url, "demo")
    spec = _spec(at)
    assert spec["data"][0]["y"][-1] == pytest.approx(hypervolume(df))
    hist = hypervolume_history(df)
    assert spec["data"][0]["x"] == hist["number"].tolist()
    # two studies overlaid on one common scale
    at.multiselect(key="hv_studies").set_value(["demo", "other"]).run()
    frames = [df, load_trials(url, "other")]
    bounds = analysis.common_bounds(frames, AXES)
    spec = _spec(at)
    assert [t["name"] for t in spec["data"]] == ["demo", "other"]
    for t, f in zip(spec["data"], frames):
        assert t["y"][-1] == pytest.approx(hypervolume(f, bounds=bounds))
    at.switch_page("views/compare.py").run()
    at.multiselect(key="cmp_studies").set_value(["demo", "other"]).run()
    assert not at.exception
    spec = _spec(at)
    for name, f in zip(["demo", "other"], frames):
        assert len(_trace(spec, name)["x"]) == len(pareto_front(f, AXES))
    table = at.dataframe[0].value.set_index("study")
    for name, f in zip(["demo", "other"], frames):
        assert table.loc[name, "hypervolume (common scale)"] == pytest.approx(hypervolume(f, objectives=AXES, bounds=bounds))
        assert table.loc[name, "front size"] == len(pareto_front(f, AXES))


def test_importance_and_parallel_coordinates(monkeypatch, store):
    at = _app(monkeypatch, store, "demo", "importance")
    at.selectbox(key="imp_eval").set_value("PED-ANOVA").run()
    assert not at.exception and not at.error
    bars = _spec(at, 0)["data"][0]
    assert "n_layer" in bars["y"] and sum(bars["x"]) == pytest.approx(1.0, abs=1e-6)
    par = _spec(at, 1)["data"][0]
    assert par["type"] == "parcoords"
    labels = [d["label"] for d in par["dimensions"]]
    assert {"n_layer", "d_model", "error", "latency_ms"} <= set(labels)


def test_predictors_and_ranking_files(monkeypatch, store):
    run = store.parent
    (run / "predictors").mkdir(exist_ok=True)
    (run / "rank").mkdir(exist_ok=True)
    doc = {"kind": "latency", "unit": "ms", "model": {"model": "gbm"}, "n_train": 80,
           "scores": {"rmse": 0.12, "kendall_tau": 0.91}, "holdout": {"y_true": [1.0, 2.0, 3.0], "y_pred": [1.1, 1.9, 3.2]}}
    (run / "predictors" / "latency.json").write_text(json.dumps(doc))
    keys = ["a", "b", "c"]
    report = {"archs": keys, "standalone": {"a": 1.0, "b": 2.0, "c": 3.0}, "metric": "val_loss",
              "supernets": {"entangled": {"inherited": {"a": 1.2, "b": 2.1, "c": 2.9}, "kendall_tau": 1.0,
                                          "spearman": 1.0, "top_k_overlap": 1.0, "mean_abs_gap": 0.13}}}
    (run / "rank" / "report.json").write_text(json.dumps(report))
    at = _app(monkeypatch, run.parent, "demo", "predictors")
    assert not at.error
    parity = _spec(at, 0)
    assert next(t for t in parity["data"] if t["name"] == "holdout")["y"] == [1.1, 1.9, 3.2]
    assert {m.label: m.value for m in at.metric}["`kendall_tau`"] == "0.91"  # Markdown: a code span
    table = at.dataframe[0].value
    assert table.loc[0, "supernet"] == "entangled" and table.loc[0, "kendall_tau"] == 1.0
    rank = _spec(at, 1)
    assert next(t for t in rank["data"] if t["name"] == "entangled")["y"] == [1.2, 2.1, 2.9]


def test_live_page_shows_new_trials(monkeypatch, tmp_path):
    import optuna

    path = tmp_path / "live.db"
    make_demo_study(path, "run", 30, seed=4)
    at = _app(monkeypatch, path, "run", "live")
    assert {m.label: m.value for m in at.metric}["trials"] == "30"
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{path}")
    for _ in range(3):
        t = study.ask()
        study.tell(t, [0.1, 1.0])
    study.ask()  # one running
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["trials"] == "34" and metrics["running"] == "1"
    assert at.dataframe[0].value["number"].iloc[0] == 33
    at.toggle(key="live_auto").set_value(False).run()
    assert not at.exception


def test_friendly_failures(monkeypatch, tmp_path, store):
    import optuna

    # an empty storage: Optuna tables, no study
    empty = tmp_path / "empty.db"
    optuna.storages.RDBStorage(f"sqlite:///{empty}").engine.dispose()
    for page in ("studies", "pareto", "detail", "live"):
        at = _app(monkeypatch, empty, page=page)
        assert not at.exception and not at.error
        assert "holds no studies" in at.info[0].value
    # a study whose trials all failed
    for page in ("pareto", "detail", "importance", "hypervolume"):
        at = _app(monkeypatch, store, "allfail", page)
        assert not at.exception
        assert "no completed trials" in at.warning[0].value
    # storages that cannot be opened
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    for target in (f"sqlite:///{junk}", "postgresql+psycopg2://nobody:secret@127.0.0.1:9/none"):
        at = _app(monkeypatch, target, page="pareto")
        assert not at.exception
        assert "cannot open storage" in at.error[0].value or "no Optuna" in at.error[0].value
        assert "secret" not in at.error[0].value
    # a storage the server was started with that has gone
    at = _app(monkeypatch, "sqlite:////no/such/file.db")
    assert not at.exception and "no such SQLite file" in at.error[0].value


def test_pages_never_write_to_the_storage(monkeypatch, store):
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    at = _app(monkeypatch, store, "demo")
    for page in ("pareto", "hypervolume", "compare", "detail", "importance", "live"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception
    assert hashlib.sha256(store.read_bytes()).hexdigest() == digest
    assert not Path(str(store) + "-journal").exists() and not Path(str(store) + "-wal").exists()


def test_thinning_keeps_the_cloud_bounded_and_the_front_exact():
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 30_000
    df = pd.DataFrame({"number": np.arange(n), "state": "COMPLETE", "error": rng.random(n),
                       "latency_ms": rng.random(n), "feasible": rng.random(n) < 0.7, "arch": None})
    df.attrs["objectives"] = AXES
    df.attrs["constraints"] = {}
    data = analysis.explorer_data(df, AXES)
    assert len(data.dominated) <= analysis.MAX_CLOUD and len(data.infeasible) <= analysis.MAX_CLOUD
    assert data.n_dominated + len(data.front) == int(df["feasible"].sum())
    assert sorted(data.front["number"]) == sorted(pareto_front(df, AXES)["number"])
    # extremes of the cloud survive thinning
    dom = df[df["feasible"] & ~df["number"].isin(data.front["number"])]
    assert data.dominated["error"].max() == dom["error"].max()


def test_rows_of_finds_trials_by_number_in_the_order_asked(store):
    df = load_trials(f"sqlite:///{store}", "demo")
    picked = [17, 3, 230, 3]
    rows = analysis.rows_of(df, picked)
    assert rows["number"].tolist() == picked
    assert rows["arch"].tolist() == [df.loc[df["number"] == n, "arch"].item() for n in picked]
    assert rows.attrs["objectives"] == df.attrs["objectives"]
    assert analysis.rows_of(df, []).empty
    with pytest.raises(KeyError, match="240"):
        analysis.rows_of(df, [5, 240])
    with pytest.raises(KeyError, match="1"):
        analysis.rows_of(df.iloc[:0], [1])


def test_server_prefetch_reads_the_study_the_app_opens_first(monkeypatch, store):
    import pandas as pd
    import streamlit as st

    from archlab.app import cache, serve, sources

    monkeypatch.setenv("ARCHLAB_APP_TARGET", str(store.parent))
    st.cache_resource.clear()
    st.cache_data.clear()
    assert serve.prefetch() == "demo"  # the sidebar's default: the storage's last study
    url = sources.find_sources(None)[0].url
    reader = cache.reader(url, "demo")
    assert reader.last_read_trials == 240
    df = cache.trials(url, "demo")  # the first visitor: nothing left to read
    assert reader.last_read_trials == 0
    pd.testing.assert_frame_equal(df, load_trials(url, "demo"))
    at = _app(monkeypatch, store.parent, page="pareto")
    assert at.session_state["study"] == "demo" and reader.last_read_trials == 0
