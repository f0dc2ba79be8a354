"""The dashboard's routing page: its data helpers and the page under Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from archlab.app import routing
from archlab.search.results import load_trials
from archlab.search.runner import run_search
from archlab.spaces.library import moe_transformer_lm_space

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _row(**cols) -> pd.Series:
    return pd.Series(cols)


def test_load_matrix_histogram_and_router_family():
    row = _row(**{"metric.routing.layers.0.load.0": 0.5, "metric.routing.layers.0.load.1": 0.5,
                  "metric.routing.layers.2.load.1": 0.9, "metric.routing.layers.2.load.0": 0.1,
                  "metric.routing.layers.2.experts_hist.1": 1.0, "metric.routing.load_cv": 0.3})
    load = routing.load_matrix(row)
    assert load.index.tolist() == [0, 2] and load.columns.tolist() == [0, 1]
    assert load.loc[2].tolist() == [0.1, 0.9]
    assert routing.experts_histogram(row).loc[2, 1] == 1.0
    trials = pd.DataFrame({
        "arch.layers.0.moe_experts": [4, 1, 4, 4], "arch.layers.0.moe_router": ["top_p", "topk", "topk", "topk"],
        "arch.layers.1.moe_experts": [1, 1, 2, np.nan], "arch.layers.1.moe_router": ["topk", "topk", "expert_choice", None],
    })
    assert routing.router_family(trials).tolist() == ["top_p", "dense", "expert_choice+topk", "topk"]


def _space():
    return moe_transformer_lm_space("rp", n_layer=(1, 2), d_model=(16,), n_head=(2,), ffn=(16,), moe_experts=(1, 4),
                                    moe_top_k=(1,), moe_router=("topk", "top_p", "expert_choice"))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("routing_app") / "study.db"
    space = _space()

    def load(i: int, e: int):
        return lambda arch: (0.25 + 0.1 * (e - 1.5) * (i + 1)) if arch["layers"][min(i, len(arch["layers"]) - 1)]["moe_experts"] > 1 else float("nan")

    metrics = {f"routing.layers.{i}.load.{e}": load(i, e) for i in range(2) for e in range(4)}
    metrics["routing.layers.0.experts_hist.1"] = lambda arch: 1.0
    metrics["routing.load_cv"] = lambda arch: 0.2
    run_search(space, {"error": ("min", lambda a: 1.0 / (1 + a["n_layer"])),
                       "size": ("min", lambda a: float(sum(la["moe_experts"] for la in a["layers"])))},
               n_trials=12, storage=f"sqlite:///{path}", study_name="rp", seed=0, metrics=metrics, show_progress=False)
    return path


def test_routing_page_shows_heatmap_histogram_and_router_colours(monkeypatch, study):
    trials = load_trials(f"sqlite:///{study}", "rp")
    assert "metric.routing.layers.1.load.3" in trials.columns
    monkeypatch.setenv("ARCHLAB_APP_TARGET", str(study))
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page("views/routing.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Routing"]
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # Pareto by router, load heatmap, experts-per-token histogram
    import json

    specs = [json.loads(c.proto.spec) for c in charts]
    legends = {tr.get("name") for tr in specs[0]["data"]}
    families = set(routing.router_family(trials[trials["state"] == "COMPLETE"]))
    assert legends == families
    assert specs[1]["data"][0]["type"] == "heatmap"
