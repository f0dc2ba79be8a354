"""experiment.search settings: defaults follow the task's metric, wrong directions are errors."""

from types import SimpleNamespace

import pytest

from archlab.search.errors import SearchError
from archlab.search.settings import DEFAULT_OBJECTIVES, parse_duration, search_settings


def _exp(metric: str, direction: str, search: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(task=SimpleNamespace(metric=metric, metric_direction=direction), search=search or {})


def test_default_objectives_follow_the_task():
    acc = search_settings(_exp("val_accuracy", "max"))["objectives"]
    assert acc == {"accuracy": ("max", "inherited"), "latency_ms": ("min", "predicted_latency")}
    loss = search_settings(_exp("val_loss", "min"))["objectives"]
    assert loss == {"loss": ("min", "inherited"), "latency_ms": ("min", "predicted_latency")}
    assert search_settings(SimpleNamespace(search={}))["objectives"] == DEFAULT_OBJECTIVES


@pytest.mark.parametrize("spec", [("min", "inherited"), ("minimize", "inherited"), "inherited"])
def test_minimising_accuracy_is_an_error(spec):
    with pytest.raises(SearchError, match=r"objectives\.acc: 'inherited' is the task's val_accuracy.*must be 'max'"):
        search_settings(_exp("val_accuracy", "max", {"objectives": {"acc": spec}}))


def test_matching_direction_passes():
    out = search_settings(_exp("val_accuracy", "max", {"objectives": {"acc": ("maximize", "inherited")}}), {"n_trials": 5})
    assert out["n_trials"] == 5 and out["objectives"]["acc"] == ("maximize", "inherited")


@pytest.mark.parametrize(("text", "seconds"), [("8h", 28800.0), ("1h30m", 5400.0), ("90s", 90.0), ("45", 45.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["8x", "h8", "-3", "0"])
def test_bad_durations(text):
    with pytest.raises(SearchError, match="timeout"):
        parse_duration(text)


def test_routed_spaces_record_their_routing_metrics_by_default():
    from archlab.spaces.library import mlp_space, moe_transformer_lm_space

    routed = moe_transformer_lm_space()
    exp = SimpleNamespace(task=SimpleNamespace(metric="val_loss", metric_direction="min"), search={}, space=routed)
    metrics = search_settings(exp)["metrics"]
    assert "routing.load_cv" in metrics and "routing.layers.0.experts_per_token" in metrics
    # the user's own metrics win, and spaces without routed layers record none
    exp.search = {"metrics": {"params": "params"}}
    assert search_settings(exp)["metrics"] == {"params": "params"}
    plain = SimpleNamespace(task=exp.task, search={}, space=mlp_space())
    assert "metrics" not in search_settings(plain)
    # no inherited objective, no supernet to measure routing with
    cheap = SimpleNamespace(task=exp.task, search={"objectives": {"p": ("min", "params")}}, space=routed)
    assert "metrics" not in search_settings(cheap)
