"""The search package takes metric sources, never an experiment: run_search with hand-made
sources computes the built-ins, records their provenance, and names a missing source."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from archlab.search import run_search
from archlab.search.errors import SearchError
from archlab.search.metric_sources import MetricSources, SearchContext
from archlab.search.objectives import resolve
from archlab.search.results import ATTR_KEY
from archlab.spaces.library import mlp_space


@pytest.fixture(scope="module")
def digits():
    from archlab.supernets.families import FAMILIES
    from archlab.supernets.tasks import DigitsTask

    task = DigitsTask()
    space = mlp_space(n_layer=(1, 2), width=(8, 16))
    kwargs = {k: v for k, v in task.model_kwargs().items() if k in ("in_features", "num_classes")}
    torch.manual_seed(0)
    net = FAMILIES["mlp"](space, **kwargs)
    return space, task, net, kwargs


def test_run_search_with_hand_made_sources_computes_the_inherited_metric(digits):
    from archlab.supernets.training.evaluation import evaluate

    space, task, net, kwargs = digits
    calls = []

    def trained():
        calls.append(1)
        return net

    sources = MetricSources(supernet=trained, untrained=trained, task=task, model_kwargs=kwargs, name="handmade",
                            provenance={"experiment": "mine", "experiment_sha256": "ab" * 32})
    study = run_search(space, {"acc": ("max", "inherited"), "p": ("min", "params")}, n_trials=4, sampler="random",
                       seed=0, storage=optuna.storages.InMemoryStorage(), sources=sources, show_progress=False)
    assert study.study_name == "handmade" and len(calls) == 2  # one trained, one "untrained" build per process
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    for t in done:
        arch = space.validate(t.user_attrs["arch"])
        assert t.values[0] == pytest.approx(evaluate(net, task, arch)["val_accuracy"])
        assert t.values[1] == sum(p.numel() for p in net.extract(arch).parameters())
    info = study.user_attrs[ATTR_KEY]
    assert (info["experiment"], info["experiment_file"], info["experiment_sha256"]) == ("mine", None, "ab" * 32)
    assert info["run_dir"] is None and info["files"] == {"supernet": None, "predictor": None}


def test_analytic_costs_read_the_sources_dimensions(digits):
    space, _, net, kwargs = digits
    arch = space.largest()
    exact = sum(p.numel() for p in net.extract(arch).parameters())
    assert resolve("params", SearchContext(space, MetricSources(model_kwargs=kwargs)))(arch) == exact
    assert math.isfinite(resolve("macs", SearchContext(space, MetricSources(model_kwargs=kwargs)))(arch))


def test_a_missing_source_is_named(digits, tmp_path):
    space, task, net, _ = digits
    with pytest.raises(SearchError, match=r"objective 'inherited' needs a task in its metric sources"):
        resolve("inherited", SearchContext(space, MetricSources(supernet=lambda: net)))
    with pytest.raises(SearchError, match=r"needs MetricSources\.supernet"):
        resolve("inherited", SearchContext(space, MetricSources(task=task)))
    with pytest.raises(SearchError, match=r"'predicted_latency' needs a run folder"):
        resolve("predicted_latency", SearchContext(space))
    with pytest.raises(SearchError, match=r"no fitted predictor at .*predictors/latency\.json"):
        run_search(space, {"l": ("min", "predicted_latency")}, n_trials=1, storage=optuna.storages.InMemoryStorage(),
                   run_dir=tmp_path, show_progress=False)
    with pytest.raises(SearchError, match=r"provenance: unknown key 'space'; allowed: experiment, experiment_file"):
        MetricSources(provenance={"space": "x"})
    with pytest.raises(SearchError, match=r"MetricSources\.supernet: expected a callable"):
        MetricSources(supernet=net.state_dict())
    with pytest.raises(SearchError, match=r"sources: expected archlab\.search\.MetricSources, got dict"):
        run_search(space, {"a": ("min", lambda a: 1.0)}, n_trials=1, storage=optuna.storages.InMemoryStorage(),
                   sources={"task": task})


def test_default_storage_is_the_run_folders_study_db(tmp_path):
    space = mlp_space(n_layer=(1, 1), width=(8, 16))
    study = run_search(space, {"w": ("min", lambda a: float(a["layers"][0]["width"]))}, n_trials=2, seed=0,
                       sampler="random", run_dir=tmp_path, show_progress=False)
    assert (tmp_path / "study.db").is_file() and study.study_name == space.name
    assert study.user_attrs[ATTR_KEY]["run_dir"] == str(tmp_path.resolve())


def test_an_experiment_turns_itself_into_sources_and_settings(tmp_path):
    from archlab.experiment import Experiment
    from archlab.searching import search_experiment
    from archlab.supernets.tasks import DigitsTask

    exp = Experiment("dec", mlp_space(n_layer=(1, 2), width=(8, 16)), family="mlp", task=DigitsTask(), runs_dir=tmp_path,
                     search={"objectives": {"p": ("min", "params")}, "trials": 3, "sampler": "random", "seed": 0})
    src = exp.metric_sources(experiment_file="dec.py")
    assert src.task is exp.task and src.name == "dec" and src.model_kwargs["num_classes"] == 10
    assert src.recorded() == {"experiment": "dec", "experiment_file": "dec.py", "experiment_sha256": None}
    assert exp.search_settings({"seed": 5, "workers": None})["seed"] == 5
    with pytest.raises(SearchError, match=r"experiment\.search: unknown key 'trails'"):
        Experiment("bad", exp.space, family="mlp", task=exp.task, search={"trails": 3}).search_settings()
    study = search_experiment(exp, experiment_file="dec.py", show_progress=False)
    assert exp.layout.study_db.is_file() and study.study_name == "dec"
    net = exp.build_supernet()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    for t in done:
        assert t.values[0] == sum(p.numel() for p in net.extract(exp.space.validate(t.user_attrs["arch"])).parameters())
    info = study.user_attrs[ATTR_KEY]
    assert (info["experiment"], info["experiment_file"], info["run_dir"]) == ("dec", "dec.py", str(exp.run_dir.resolve()))
