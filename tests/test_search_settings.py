"""experiment.search settings: defaults follow the task's metric, wrong directions are errors."""

import pytest

from archlab.search.errors import SearchError
from archlab.search.settings import DEFAULT_OBJECTIVES, parse_duration, search_settings


def test_default_objectives_follow_the_task():
    acc = search_settings({}, task_metric=("val_accuracy", "max"))["objectives"]
    assert acc == {"accuracy": ("max", "inherited"), "latency_ms": ("min", "predicted_latency")}
    loss = search_settings({}, task_metric=("val_loss", "min"))["objectives"]
    assert loss == {"loss": ("min", "inherited"), "latency_ms": ("min", "predicted_latency")}
    assert search_settings({})["objectives"] == DEFAULT_OBJECTIVES


@pytest.mark.parametrize("spec", [("min", "inherited"), ("minimize", "inherited"), "inherited"])
def test_minimising_accuracy_is_an_error(spec):
    with pytest.raises(SearchError, match=r"objectives\.acc: 'inherited' is the task's val_accuracy.*must be 'max'"):
        search_settings({"objectives": {"acc": spec}}, task_metric=("val_accuracy", "max"))


def test_matching_direction_passes():
    out = search_settings({"objectives": {"acc": ("maximize", "inherited")}}, {"n_trials": 5},
                          task_metric=("val_accuracy", "max"))
    assert out["n_trials"] == 5 and out["objectives"]["acc"] == ("maximize", "inherited")


def test_errors_name_the_settings_and_the_allowed_keys():
    with pytest.raises(SearchError, match=r"experiment\.search: unknown key 'trails'; allowed: objectives"):
        search_settings({"trails": 3}, where="experiment.search")
    with pytest.raises(SearchError, match=r"search settings: n_trials must be an integer, got '3'"):
        search_settings({"n_trials": "3"})
    with pytest.raises(SearchError, match="expected a dict of settings, got list"):
        search_settings([("n_trials", 3)])


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
    loss = ("val_loss", "min")
    metrics = search_settings({}, task_metric=loss, space=routed)["metrics"]
    assert "routing.load_cv" in metrics and "routing.layers.0.experts_per_token" in metrics
    # the user's own metrics win, and spaces without routed layers record none
    assert search_settings({"metrics": {"params": "params"}}, task_metric=loss, space=routed)["metrics"] == {"params": "params"}
    assert "metrics" not in search_settings({}, task_metric=loss, space=mlp_space())
    # no inherited objective, no supernet to measure routing with
    assert "metrics" not in search_settings({"objectives": {"p": ("min", "params")}}, task_metric=loss, space=routed)
