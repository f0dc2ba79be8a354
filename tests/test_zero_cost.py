"""Zero-cost proxies (``archlab.supernets.ranking.zero_cost``) and the ``ehvi`` sampler's ``hints``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from archlab.search import MetricSources, SearchError, run_search
from archlab.search.ehvi_planner import Planner
from archlab.spaces import SearchSpace
from archlab.spaces.library import cell_space
from archlab.spaces.params import Choice
from archlab.supernets.families.cell import CellNet
from archlab.supernets.ranking.zero_cost import SynflowScorer, synflow


def test_synflow_of_a_bias_free_linear_chain_is_depth_times_its_output():
    """For a net homogeneous of degree 1 in each layer's weights, sum theta * dR/dtheta over one
    layer is R (Euler), so synflow = depth * R, with R = 1^T |W3| |W2| |W1| 1."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7, bias=False), nn.Linear(7, 4, bias=False), nn.Linear(4, 3, bias=False))
    before = [p.detach().clone() for p in net.parameters()]
    R = torch.ones(1, 5, dtype=torch.float64)
    for layer in net:
        R = R @ layer.weight.detach().double().abs().T
    got = synflow(net, torch.randn(8, 5))
    assert got == pytest.approx(math.log(3 * float(R.sum())), rel=1e-12)
    for p, b in zip(net.parameters(), before):  # the caller's model is untouched (signs, dtype)
        assert p.dtype == torch.float32 and torch.equal(p.detach(), b)


def test_synflow_is_minus_inf_when_nothing_flows_and_the_scorer_floors_it():
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[1].weight.zero_()
    assert synflow(net, torch.zeros(1, 3)) == -math.inf


def test_scorer_on_the_supernet_equals_synflow_of_each_extracted_subnet_and_ranks_cut_cells_last():
    torch.manual_seed(0)
    net = CellNet(channels=4, cells_per_stage=1, image_size=8)
    space = net.space
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(6)]
    none = space.validate({"edges": [{"op": "none"}] * 6})
    conv = space.validate({"edges": [{"op": "nor_conv_3x3"}] * 6})
    scorer = SynflowScorer(net)
    got = scorer([*archs, none, conv])
    want = [synflow(net.extract(a), net.example_input(1)) for a in [*archs, none, conv]]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[-2] < np.delete(got, -2).min()  # all-none: lowest
    assert got[-1] > got[-2] + 5  # every edge a conv: many orders of magnitude more paths
    assert next(net.parameters()).dtype == torch.float32  # the caller's supernet is not changed
    assert scorer([archs[0]])[0] == got[0] and len(scorer._cache) == len({a.key for a in [*archs, none, conv]})


def _toy_space() -> SearchSpace:
    return SearchSpace("toy", a=Choice(0, 1, 2, 3), b=Choice(0, 1, 2, 3), c=Choice(0, 1, 2))


def test_planner_hints_are_standardised_weighted_inputs_appended_to_the_encoding():
    space = _toy_space()
    archs = [space.sample(np.random.default_rng(i)) for i in range(20)]

    def hint(batch):
        return [10.0 * a["a"] + a["b"] for a in batch]

    plain = Planner(space, seed=0)
    hinted = Planner(space, seed=0, hints=[hint], hint_weight=3.0)
    X0, X1 = plain.encode(archs), hinted.encode(archs)
    assert X1.shape == (20, X0.shape[1] + 1)
    np.testing.assert_array_equal(X1[:, :-1], X0)
    ref = np.array(hint(hinted.reference_sample()))
    np.testing.assert_allclose(X1[:, -1], 3.0 * (np.array(hint(archs)) - ref.mean()) / ref.std())
    Y = np.c_[[-float(hint([a])[0]) for a in archs], [a["c"] for a in archs]].astype(float)
    got = hinted.propose(archs, Y, None, [], {a.key for a in archs})
    assert got.key not in {a.key for a in archs}


@pytest.mark.parametrize("kwargs, message", [
    ({"hints": "synflow"}, "hints must be a list of callables"),
    ({"hints": [1.0]}, "hints must be a list of callables"),
    ({"hints": [len], "hint_weight": 0}, "hint_weight must be a number > 0"),
    ({"hints": [len], "hint_weight": True}, "hint_weight must be a number > 0"),
])
def test_planner_rejects_bad_hints(kwargs, message):
    with pytest.raises(SearchError, match=message):
        Planner(_toy_space(), **kwargs)


def test_a_hint_that_is_not_finite_is_a_clear_error():
    space = _toy_space()
    planner = Planner(space, hints=[lambda batch: [float("nan")] * len(batch)])
    with pytest.raises(SearchError, match="hints: a hint returned a value that is not finite"):
        planner.encode([space.sample(np.random.default_rng(0))])


def _objectives():
    def acc(arch):
        return float(sum(e["op"] == "nor_conv_3x3" for e in arch["edges"]))

    def cost(arch):
        return float(sum(e["op"] != "none" for e in arch["edges"]))

    return {"acc": ("max", acc), "cost": ("min", cost)}


def test_run_search_resolves_a_hint_by_name_and_records_the_builtin_synflow_metric():
    space = cell_space()

    def untrained():
        torch.manual_seed(0)
        return CellNet(space, channels=4, cells_per_stage=1, image_size=8)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = run_search(space, _objectives(), n_trials=12, count="distinct", storage=optuna.storages.InMemoryStorage(),
                           sampler="ehvi", sampler_options={"hints": ["synflow"], "n_random": 20},
                           metrics={"synflow": "synflow"}, seed=0, sources=MetricSources(untrained=untrained),
                           show_progress=False)
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len({t.user_attrs["arch"] for t in trials}) == 12
    scorer = SynflowScorer(untrained())
    from archlab.spaces import Arch

    for t in trials[:3]:
        assert t.user_attrs["metrics"]["synflow"] == pytest.approx(scorer([Arch.from_json(t.user_attrs["arch"])])[0])


@pytest.mark.parametrize("sampler, options, message", [
    ("ehvi", {"hints": ["nope"]}, "sampler_options.hints: unknown metric 'nope'; allowed: acc, cost, "),
    ("ehvi", {"hints": "synflow"}, "sampler_options.hints: expected a list"),
    ("tpe", {"hints": ["synflow"]}, "only the 'ehvi' sampler takes hints, not 'tpe'"),
])
def test_run_search_rejects_bad_hints_before_any_trial(sampler, options, message):
    with pytest.raises(SearchError, match=message):
        run_search(cell_space(), _objectives(), n_trials=2, storage=optuna.storages.InMemoryStorage(),
                   sampler=sampler, sampler_options=options, show_progress=False)


def test_the_builtin_synflow_needs_an_untrained_supernet():
    with warnings.catch_warnings(), pytest.raises(SearchError, match=r"metric 'synflow' needs MetricSources\.untrained"):
        warnings.simplefilter("ignore")
        run_search(cell_space(), _objectives(), n_trials=2, storage=optuna.storages.InMemoryStorage(),
                   sampler="ehvi", sampler_options={"hints": ["synflow"]}, show_progress=False)


def test_the_benchmark_parameter_baseline_is_the_plain_subnet_count(monkeypatch):
    """``bench/zero_cost.py`` counts a cell's parameters additively per edge (30 extractions
    instead of 15,625); the count must be the extracted plain subnet's."""
    import importlib.util
    import sys
    from pathlib import Path

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts bench/ first on the path
    spec = importlib.util.spec_from_file_location("bench_zero_cost", Path(__file__).resolve().parents[1] / "bench" / "zero_cost.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    net = CellNet(channels=4, cells_per_stage=2, image_size=8)
    rng = np.random.default_rng(1)
    archs = [net.space.sample(rng) for _ in range(12)]
    count = bench.param_counter(net)
    counts = [count(a) for a in archs]
    assert counts == [sum(p.numel() for p in net.extract(a).parameters()) for a in archs]
    assert len(set(counts)) > 3


@pytest.mark.slow
def test_hints_by_name_work_in_forked_workers_on_sqlite(tmp_path):
    """Each worker process resolves the hint's name itself (a name travels, a scorer does not)."""
    space = cell_space()

    def untrained():
        torch.manual_seed(0)
        return CellNet(space, channels=4, cells_per_stage=1, image_size=8)

    url = f"sqlite:///{tmp_path / 'study.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = run_search(space, _objectives(), n_trials=10, count="distinct", storage=url, study_name="hinted",
                           sampler="ehvi", sampler_options={"hints": ["synflow"], "n_random": 20, "n_startup": 3},
                           seed=0, workers=2, sources=MetricSources(untrained=untrained), show_progress=False)
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) == 10 and len({t.user_attrs["arch"] for t in complete}) == 10
    assert not [t for t in study.get_trials() if t.state.name in ("RUNNING", "FAIL")]
