"""The ``ehvi`` sampler: acquisition maths, no repeated evaluations, constraints, resuming, and
sample efficiency on a real NAS-Bench-201 sub-problem (skipped when the shared table is absent)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from archlab.search import run_search
from archlab.search.pareto import hypervolume_of
from archlab.search.surrogate import GPModel, MCBox, Warp, hvi_2d
from archlab.spaces.library import cell_space

ROOT = Path(__file__).resolve().parents[1]
OPTS = {"n_startup": 6, "n_random": 60, "n_parents": 6, "local_rounds": 1}


def _nb201():
    spec = importlib.util.spec_from_file_location("bench_nb201", ROOT / "bench" / "nb201.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


def nb201_table():
    """``(bench/nb201 module, the NB201 table)``; skips the test when the shared table is absent."""
    nb = _nb201()
    path = nb.find_table()
    if path is None:
        pytest.skip("nb201_dev.csv not found (set ARCHLAB_DATA or put ../shared/data beside the project)")
    return nb, nb.load_table(path)


def test_hvi_2d_is_exact_and_mcbox_close():
    rng = np.random.default_rng(0)
    F, P, ref = rng.random((12, 2)), rng.random((40, 2)), np.array([1.1, 1.2])
    exact = [hypervolume_of(np.vstack([F, p]), ref) - hypervolume_of(F, ref) for p in P]
    assert np.allclose(hvi_2d(F, P, ref), exact, atol=1e-12)
    assert np.allclose(hvi_2d(np.zeros((0, 2)), P, ref), np.prod(ref - P, axis=1))
    F3, P3, r3 = rng.random((10, 3)), rng.random((6, 3)), np.full(3, 1.1)
    exact3 = np.array([hypervolume_of(np.vstack([F3, p]), r3) - hypervolume_of(F3, r3) for p in P3])
    est = MCBox(F3, np.zeros(3), r3, n=200_000, seed=1).hvi(P3)
    assert np.all(np.abs(est - exact3) < 0.01) and np.all((est > 0) == (exact3 > 0.002) | (est > 0))


def test_warp_is_monotone_and_inverts_observed_values():
    y = np.array([0.3, 0.9, 0.31, 0.28, 0.99, 0.35, 0.29])
    w = Warp(y)
    assert np.allclose(w.inverse(w.z), y)
    grid = np.linspace(-4, 4, 50)
    assert np.all(np.diff(w.inverse(grid)) >= 0)


def test_gp_fits_an_additive_function_and_is_uncertain_away_from_data():
    space = cell_space(n_edges=6, ops=("a", "b", "c", "d"))
    archs = list(space.enumerate())
    X = space.encode_many(archs, normalized=True).astype(float)
    w = np.random.default_rng(0).random(X.shape[1])
    y = X @ w
    idx = np.random.default_rng(1).permutation(len(X))
    model = GPModel().fit(X[idx[:60]], y[idx[:60], None])
    mean, std = model.predict(X[idx[60:]])
    assert np.corrcoef(mean[:, 0], y[idx[60:]])[0, 1] > 0.95
    _, std_train = model.predict(X[idx[:60]])
    assert std_train.mean() < std.mean()


def _proxy():
    """The old synthetic NB201-shaped proxy (fast fixture): accuracy with edge interactions, cost."""
    ops = ("none", "skip", "conv1", "conv3", "pool")
    strength = {"none": 0.0, "skip": 0.45, "conv1": 0.7, "conv3": 1.0, "pool": 0.3}
    cost = {"none": 0.0, "skip": 0.05, "conv1": 0.35, "conv3": 1.0, "pool": 0.2}

    def acc(a):
        o = [e["op"] for e in a["edges"]]
        s = np.array([strength[x] for x in o]) @ np.array([1.0, 0.8, 1.2, 0.6, 1.1, 0.9])
        pairs = sum(1 for x, y in itertools.pairwise(o) if "conv" in x and "conv" in y)
        return float(0.9 * (1 - np.exp(-1.3 * s)) + 0.02 * pairs - (0.3 if o[0] == o[3] == o[5] == "none" else 0.0))

    def lat(a):
        o = [e["op"] for e in a["edges"]]
        return float(0.2 + sum(cost[x] * (1 + 0.15 * i) for i, x in enumerate(o)) + 0.05 * sum(x != "none" for x in o))

    return cell_space(n_edges=6, ops=ops), acc, lat


def test_distinct_count_no_repeats_and_resume_continues(tmp_path):
    space, acc, lat = _proxy()
    calls: list[str] = []

    def f(a):
        calls.append(a.key)
        return acc(a)

    url = f"sqlite:///{tmp_path}/s.db"
    objs = {"acc": ("max", f), "lat": ("min", lat)}
    run_search(space, objs, n_trials=14, storage=url, study_name="s", sampler="ehvi", seed=0,
               sampler_options=OPTS, count="distinct")
    assert len(calls) == 14
    study = run_search(space, objs, n_trials=24, storage=url, study_name="s", sampler="ehvi", seed=1,
                       sampler_options=OPTS, count="distinct")
    trials = study.get_trials()
    assert len(calls) == len(set(calls)) == 24  # the resumed run evaluated 10 new architectures only
    assert [t.user_attrs["arch"] for t in trials] == calls  # the sampler never proposed a repeat
    assert all(t.state.name == "COMPLETE" for t in trials)


def test_distinct_count_runs_past_repeats_of_a_sampler_that_repeats():
    space = cell_space(n_edges=3, ops=("a", "b", "c"))  # 27 archs: random search repeats
    calls: list[str] = []

    def f(a):
        calls.append(a.key)
        return float(sum(e["op"] == "a" for e in a["edges"]))

    study = run_search(space, {"a": ("max", f), "c": ("min", lambda a: float(a.key.count("c")))}, n_trials=20,
                       storage=optuna.storages.InMemoryStorage(), study_name="r", sampler="random", seed=0, count="distinct")
    reused = [t for t in study.get_trials() if "reused_from" in t.user_attrs]
    assert len(calls) == len(set(calls)) == 20 and len(reused) > 0
    assert len(study.get_trials()) == 20 + len(reused)


def test_ehvi_honours_a_constraint():
    space, acc, lat = _proxy()
    bound = 2.0

    def feasible_hv(sampler, seed):
        s = run_search(space, {"acc": ("max", acc), "lat": ("min", lat)}, n_trials=30, storage=optuna.storages.InMemoryStorage(),
                       study_name="c", sampler=sampler, seed=seed, constraints={"lat": bound},
                       sampler_options=OPTS if sampler == "ehvi" else None, count="distinct")
        done = s.get_trials()
        ok = [t for t in done if all(v <= 0 for v in t.constraints.values())]
        Y = np.array([[-t.values[0], t.values[1]] for t in ok]).reshape(-1, 2)
        return hypervolume_of(Y, np.array([0.0, bound])), len(ok) / len(done), done

    hv_e, _, done = feasible_hv("ehvi", 0)
    hv_r, frac_r, _ = feasible_hv("random", 0)
    assert all("lat" in t.constraints for t in done)
    late = done[OPTS["n_startup"]:]
    assert np.mean([t.constraints["lat"] <= 0 for t in late]) > frac_r  # the model steers into the feasible set
    assert hv_e > hv_r


def test_ehvi_beats_random_on_a_real_nb201_subproblem():
    _, table = nb201_table()
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")  # 4^6 = 4,096 cells of the table
    sub = cell_space("nb201_sub", n_edges=6, ops=ops)
    keep = [i for i, k in enumerate(table.keys) if "avg_pool" not in k]
    rows = {table.keys[i]: i for i in keep}
    acc_c, lat_c = table.columns["cifar100_acc"], table.columns["titan_rtx_1_ms"]
    loss = np.column_stack([1 - acc_c[keep] / 100, lat_c[keep] / lat_c[keep].max()])
    ref = np.ones(2)
    hv_exact = hypervolume_of(loss, ref)

    def gap(sampler, seed, n=40):
        s = run_search(sub, {"acc": ("max", lambda a: float(acc_c[rows[a.key]])),
                             "lat": ("min", lambda a: float(lat_c[rows[a.key]]))},
                       n_trials=n, storage=optuna.storages.InMemoryStorage(), study_name="nb", sampler=sampler,
                       seed=seed, sampler_options=OPTS if sampler == "ehvi" else None, count="distinct")
        got = [t for t in s.get_trials() if "reused_from" not in t.user_attrs]
        assert len(got) == n
        L = np.array([[1 - t.values[0] / 100, t.values[1] / lat_c[keep].max()] for t in got])
        return 1 - hypervolume_of(L, ref) / hv_exact

    g_ehvi, g_rand = gap("ehvi", 0), gap("random", 0)
    assert g_ehvi < g_rand
    assert g_ehvi < 0.08  # about 0.02 measured; random search 0.1


def test_expensive_objectives_default_to_ehvi_and_count_is_checked():
    from archlab.search.errors import SearchError
    from archlab.search.settings import search_settings

    def exp(search):
        return search

    assert search_settings(exp({"objectives": {"acc": ("max", "inherited")}}))["sampler"] == "ehvi"
    assert search_settings(exp({"objectives": {"acc": ("max", "inherited")}, "sampler": "tpe"}))["sampler"] == "tpe"
    assert "sampler" not in search_settings(exp({"objectives": {"w": ("min", lambda a: 1.0)}}))
    assert search_settings(exp({"count": "distinct"}))["count"] == "distinct"
    space, acc, _ = _proxy()
    with pytest.raises(SearchError, match="count must be one of trials, distinct"):
        run_search(space, {"a": ("max", acc)}, n_trials=2, storage=optuna.storages.InMemoryStorage(), count="unique")


def test_gp_survives_duplicate_rows_and_constant_targets():
    X = np.repeat(np.eye(4), 3, axis=0)  # every row three times
    y = np.column_stack([np.arange(12) % 4 * 1.0, np.ones(12)])
    model = GPModel().fit(X, y)
    mean, std = model.predict(np.eye(4))
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    assert np.all(np.diff(mean[:, 0]) > 0) and np.allclose(mean[:, 1], 1.0)


def _bench_search(monkeypatch):
    """``bench/search.py`` as a module (its changes to ``sys.path`` and the environment undone after)."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts bench/ first on the path
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # it sets these: undone after
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    spec = importlib.util.spec_from_file_location("bench_search", ROOT / "bench" / "search.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    return bench


def test_the_search_benchmark_merges_parts_and_reuses_an_unchanged_anchor(monkeypatch, tmp_path):
    """``bench/search.py --merge``: rerun rows join carried rows in one order and are paired with a
    carried anchor; a part run further becomes ``efficiency_long`` without replacing the main
    row. ``--paired --reuse-anchor`` reruns only the default sampler."""
    import json

    _, table = nb201_table()
    bench = _bench_search(monkeypatch)
    name = bench.problems(table, False, [0])[0].name

    def row(gaps: dict[str, list[float]]) -> dict:
        return {"gap": gaps, "gap_median": {b: float(np.median(g)) for b, g in gaps.items()}}

    def part(budgets, samplers) -> dict:
        return {"benchmark": "search", "complete": True, "wall_s": 1.0, "efficiency": {
            "budgets": budgets, "seeds": [0, 1, 2], "problems": {name: {
                "objectives": ["cifar100_acc", "titan_rtx_1_ms"], "bound_ms": None, "samplers": samplers,
                "paired_vs_tpe": {}, "ehvi_minus_tpe": {}}}}}

    tpe = row({"50": [0.05, 0.06, 0.07], "100": [0.04, 0.05, 0.06]})
    out = tmp_path / "search.json"
    out.write_text(json.dumps({"efficiency": part([50, 100], {"tpe": tpe, "ehvi+lat": row({"100": [1.0] * 3})})[
        "efficiency"], "paired_tpe": {"budget": 100, "seeds": [0, 1], "anchor": "tpe", "pairs": {}}}))
    main = tmp_path / "main.json"
    main.write_text(json.dumps(part([50, 100], {"ehvi+lat": row({"50": [0.02] * 3, "100": [0.01, 0.02, 0.03]})})))
    long = tmp_path / "long.json"
    long.write_text(json.dumps(part([50, 100, 500], {"tpe": tpe, "ehvi+lat": row({"500": [0.001] * 3})})))
    bench.merge([str(long), str(main)], out, carry=["tpe"])
    doc = json.loads(out.read_text())
    entry = doc["efficiency"]["problems"][name]
    assert list(entry["samplers"]) == ["ehvi+lat", "tpe"] and "carried_over" in entry["samplers"]["tpe"]
    assert entry["samplers"]["ehvi+lat"]["gap"]["100"] == [0.01, 0.02, 0.03]  # the main part's, not the long one's
    assert entry["ehvi_minus_tpe"]["100"]["median"] == pytest.approx(-0.03) and entry["ehvi_minus_tpe"]["100"]["a_better"]
    assert doc["efficiency"]["budgets"] == [50, 100] and doc["efficiency_long"]["budgets"] == [50, 100, 500]
    assert doc["efficiency_long"]["problems"][name]["samplers"]["ehvi+lat"]["gap"] == {"500": [0.001] * 3}
    assert doc["efficiency_long"]["carried_over"] == [] and doc["paired_tpe"]["seeds"] == [0, 1]
    assert not doc["complete"]  # one problem of eleven
    doc["efficiency"]["problems"][name]["latency_predictor"] = {"model": "lut", "profiled_cells": 150}
    out.write_text(json.dumps(doc))
    other = tmp_path / "other.json"  # only ehvi rerun: ehvi+lat carried with what its predictor was
    other.write_text(json.dumps(part([50, 100], {"ehvi": row({"50": [0.03] * 3, "100": [0.02] * 3})})))
    bench.merge([str(other)], out, carry=["ehvi+lat", "tpe"])
    entry = json.loads(out.read_text())["efficiency"]["problems"][name]
    assert list(entry["samplers"]) == ["ehvi+lat", "ehvi", "tpe"] and entry["latency_predictor"]["model"] == "lut"
    assert entry["ehvi_minus_tpe"]["100"]["median"] == pytest.approx(-0.03)  # the carried ehvi+lat, paired

    class Curve:
        def __init__(self, gap: float) -> None:
            self.gap = gap

        def gap_at(self, budget: int) -> float:
            return self.gap

    ran: list[tuple[str, int]] = []
    monkeypatch.setattr(bench, "run_curve", lambda prob, sampler, seed, budget: (
        ran.append((sampler, seed)) or Curve(0.01 * seed), 0.0, budget))
    previous = {"budget": 100, "seeds": [0, 1], "anchor": "tpe", "pairs": {name: {"gap": {"tpe": [0.5, 0.6]}}}}
    got = bench.paired_anchor(table, [0, 1], 100, [0], "tpe", previous)
    assert ran == [("ehvi+lat", 0), ("ehvi+lat", 1)] and got["anchor_carried_over"]
    assert got["pairs"][name]["gap"] == {"ehvi+lat": [0.0, 0.01], "tpe": [0.5, 0.6]}
    ran.clear()
    got = bench.paired_anchor(table, [0, 1, 2], 100, [0], "tpe", previous)  # other seeds: the anchor reruns
    assert sorted(ran) == sorted([("ehvi+lat", s) for s in range(3)] + [("tpe", s) for s in range(3)])
    assert "anchor_carried_over" not in got


def test_paired_parts_join_by_pairs_and_drop_the_timing_of_rerun_pairs(monkeypatch):
    """``bench/search.py --paired --problems``: a part joins the stored parts of the same anchor,
    budget and seeds; an old part's time goes once all its pairs are rerun, so ``parts`` times what
    is stored."""
    bench = _bench_search(monkeypatch)
    order = ["a", "b", "c", "d"]

    def part(pairs: list[str], wall: float, better: bool = True, carried: bool = False) -> dict:
        return {"budget": 100, "seeds": [0, 1], "anchor": "tpe", "parts": [{"pairs": pairs, "wall_s": wall}],
                "pairs": {n: {"a_better": better, "wall": wall, "anchor_carried_over": carried} for n in pairs}}

    old = bench.join_paired(part(["c", "d"], 2.0, carried=True), part(["a", "b"], 1.0), order)
    old["parts_wall_s"] = [9.0]  # an unattributed timing from before ``parts``: not kept
    assert list(old["pairs"]) == order and old["pairs_better"] == 4 and "previous run" in old["anchor_carried_over"]
    assert old["parts"] == [{"pairs": ["c", "d"], "wall_s": 2.0}, {"pairs": ["a", "b"], "wall_s": 1.0}]
    new = bench.join_paired(old, part(["d", "c"], 3.0, better=False), order)
    assert list(new["pairs"]) == order and new["pairs_better"] == 2 and new["pairs"]["c"]["wall"] == 3.0
    assert new["parts"] == [{"pairs": ["a", "b"], "wall_s": 1.0}, {"pairs": ["d", "c"], "wall_s": 3.0}]
    assert "parts_wall_s" not in new and "anchor_carried_over" not in new  # the carried pairs were rerun
    other = part(["a"], 5.0)
    other["seeds"] = [0, 1, 2]  # other seeds: nothing joins
    assert bench.join_paired(new, other, order) == other


def test_the_search_benchmark_reference_is_what_its_code_computes(monkeypatch):
    """``bench/search.py``'s noise-free oracle (the reference for the gap goals): equivalent
    cells form the table's 9,445 classes, its gap is small but above zero (the exact front is
    made of single training runs), and the stored figures are this code's."""
    import json

    _, table = nb201_table()
    bench = _bench_search(monkeypatch)
    got = bench.floor(table)
    assert got["classes"] == 9445 and len(got["pairs"]) == 8
    for name, v in got["pairs"].items():
        assert 0.0 < v["gap"] < 0.003 and v["evaluations"] <= 2 * v["exact_front"], (name, v)
    stored = json.loads((ROOT / "bench" / "results" / "search.json").read_text())["floor"]
    assert stored["classes"] == got["classes"]
    for name, v in got["pairs"].items():
        assert stored["pairs"][name]["evaluations"] == v["evaluations"]
        assert abs(stored["pairs"][name]["gap"] - v["gap"]) < 1e-12, name
