"""Results API: exact Pareto fronts and hypervolume against brute force, trials frames."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archlab.search import results
from archlab.search.pareto import (
    hypervolume_mc,
    hypervolume_of,
    non_dominated_mask,
    non_dominated_rank,
)
from archlab.search.storage import StorageError
from archlab.spaces.library import mlp_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def brute_mask(Y: np.ndarray) -> np.ndarray:
    n = len(Y)
    return np.array(
        [not any(np.all(Y[j] <= Y[i]) and np.any(Y[j] < Y[i]) for j in range(n)) for i in range(n)], dtype=bool
    )


def inclusion_exclusion(Y: np.ndarray, r: np.ndarray) -> float:
    Y = Y[np.all(r > Y, axis=1)]
    total = 0.0
    for k in range(1, len(Y) + 1):
        for S in itertools.combinations(range(len(Y)), k):
            total += (-1) ** (k + 1) * float(np.prod(r - Y[list(S)].max(axis=0)))
    return total


def grid_volume(Y: np.ndarray, r: int) -> int:
    """Unit cells of [0, r)^m dominated by integer points: a second, independent brute force."""
    m = Y.shape[1]
    count = 0
    for cell in itertools.product(range(r), repeat=m):
        if len(Y) and np.any(np.all(np.array(cell) >= Y, axis=1)):
            count += 1
    return count


points = st.integers(1, 5).flatmap(
    lambda m: st.lists(st.lists(st.integers(0, 6), min_size=m, max_size=m), min_size=0, max_size=8)
)


@settings(max_examples=150, deadline=None)
@given(points)
def test_front_and_hypervolume_match_brute_force(rows):
    m = len(rows[0]) if rows else 2
    Y = np.array(rows, dtype=float).reshape(-1, m)
    assert np.array_equal(non_dominated_mask(Y), brute_mask(Y))
    r = np.full(m, 6.5)
    assert hypervolume_of(Y, r) == pytest.approx(inclusion_exclusion(Y, r), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 3).flatmap(lambda m: st.lists(st.lists(st.integers(0, 4), min_size=m, max_size=m), max_size=12)))
def test_hypervolume_matches_grid_count(rows):
    m = len(rows[0]) if rows else 2
    Y = np.array(rows, dtype=float).reshape(-1, m)
    assert hypervolume_of(Y, np.full(m, 5.0)) == pytest.approx(grid_volume(Y, 5))


def test_known_values_and_ranks():
    Y = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0], [2.0, 2.0]])
    assert non_dominated_mask(Y).tolist() == [True, True, True, False, True]
    assert non_dominated_rank(Y).tolist() == [0, 0, 0, 1, 0]
    # staircase under (4, 4): 3*1 + 2*1 + 1*1 = 6
    assert hypervolume_of(Y, np.array([4.0, 4.0])) == pytest.approx(6.0)
    cube = np.array([[0.0, 0.0, 0.0]])
    assert hypervolume_of(cube, np.array([2.0, 3.0, 4.0])) == pytest.approx(24.0)
    est, se = hypervolume_mc(Y, np.array([4.0, 4.0]), n_samples=100_000, seed=1)
    assert abs(est - 6.0) < 5 * se + 1e-3


def test_large_3d_front_is_fast_and_consistent():
    rng = np.random.default_rng(0)
    Y = rng.random((1500, 3))
    exact = hypervolume_of(Y, np.ones(3))
    est, se = hypervolume_mc(Y, np.ones(3), n_samples=100_000, seed=0)
    assert abs(exact - est) < 5 * se


# a study written exactly as the contract says -------------------------------------------
@pytest.fixture
def study_db(tmp_path):
    space = mlp_space(n_layer=(1, 2), width=(32, 64))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(
        storage=url, study_name="demo", directions=["minimize", "maximize"],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )  # fmt: skip
    study.set_user_attr(
        "archlab",
        {
            "version": "0.1.0",
            "space": space.to_json(),
            "objectives": [{"name": "error", "direction": "minimize"}, {"name": "speed", "direction": "maximize"}],
            "constraints": {"params": 5000.0},
            "experiment": None,
            "files": {"supernet": None, "predictor": None},
            "sampler": "random",
        },
    )
    data = [  # (error, speed, params)
        (0.30, 10.0, 1000.0),
        (0.20, 8.0, 2000.0),
        (0.10, 4.0, 4000.0),
        (0.25, 7.0, 3000.0),  # dominated by (0.20, 8.0)
        (0.05, 9.0, 9000.0),  # would dominate, but infeasible (params > 5000)
        (0.10, 4.0, 4000.0),  # same values as #2 but another arch
    ]
    archs = space.sample_many(len(data), seed=3)
    for (err, speed, params), arch in zip(data, archs):
        study.enqueue_trial(space.to_params(arch))
        t = study.ask()
        assert space.suggest(t) == arch
        t.set_user_attr("arch", arch.key)
        t.set_user_attr("metrics", {"error": err, "speed": speed, "params": params})
        t.set_constraint("params", params - 5000.0)
        study.tell(t, [err, speed])
    t = study.ask()
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    return url, archs


def test_load_trials_columns_and_attrs(study_db):
    url, archs = study_db
    df = results.load_trials(url, "demo")
    assert list(df.columns[:7]) == ["number", "state", "datetime_start", "datetime_complete", "duration_s", "error", "speed"]
    assert "metric.params" in df.columns and "constraint.params" in df.columns
    assert "arch" in df.columns and any(c.startswith("arch.layers.0.width") for c in df.columns)
    assert len(df) == 7
    assert df["state"].tolist() == ["COMPLETE"] * 6 + ["FAIL"]
    assert df["feasible"].tolist() == [True, True, True, True, False, True, False]
    assert df.loc[4, "constraint.params"] == pytest.approx(4000.0)
    assert json.loads(df.loc[0, "arch"]) == archs[0].to_dict()
    assert df.attrs["objectives"][1] == {"name": "speed", "direction": "maximize"}
    assert df.attrs["constraints"] == {"params": 5000.0}
    assert json.loads(df.attrs["space"])["name"] == "mlp"
    assert df["duration_s"].iloc[0] >= 0


def test_pareto_front_and_hypervolume(study_db):
    url, _ = study_db
    df = results.load_trials(url, "demo")
    front = results.pareto_front(df)
    assert front["number"].tolist() == [2, 5, 1, 0]  # sorted by error; #5 ties #2 (other arch)
    # scaled: error in [0.10, 0.30], speed (negated) in [-10, -4]; reference 1.1
    pts = np.array([[0.0, 1.0], [0.5, 1 / 3], [1.0, 0.0]])
    assert results.hypervolume(df) == pytest.approx(hypervolume_of(pts, np.array([1.1, 1.1])))
    # a raw reference point in the objectives' own units and directions
    raw = results.hypervolume(df, reference={"error": 0.4, "speed": 0.0})
    assert raw == pytest.approx(hypervolume_of(pts, np.array([1.5, 10 / 6])))
    hist = results.hypervolume_history(df)
    assert hist["number"].tolist() == [0, 1, 2, 3, 4, 5]
    assert np.all(np.diff(hist["hypervolume"]) >= 0)
    assert hist["hypervolume"].iloc[-1] == pytest.approx(results.hypervolume(df))
    assert hist["hypervolume"].iloc[0] == pytest.approx(0.1 * 1.1)  # (1,0) alone under (1.1,1.1)
    only_err = results.pareto_front(df, objectives=["error"])
    assert set(only_err["number"]) == {2, 5}


def test_list_studies_and_export(study_db, tmp_path):
    url, _ = study_db
    ls = results.list_studies(url)
    row = ls.iloc[0]
    assert row["study_name"] == "demo"
    assert (row["n_trials"], row["n_complete"], row["n_fail"], row["n_running"]) == (7, 6, 1, 0)
    assert row["objectives"] == ["error", "speed"] and row["directions"] == ["minimize", "maximize"]
    assert row["front_size"] == 4
    assert row["hypervolume"] == pytest.approx(results.hypervolume(results.load_trials(url, "demo")))
    df = results.load_trials(url, "demo")
    p = results.export_trials(df, tmp_path / "t.parquet")
    back = pd.read_parquet(p)
    pd.testing.assert_series_equal(back["error"], df["error"])
    assert back.attrs["objectives"] == df.attrs["objectives"]
    c = results.export_trials(results.pareto_front(df), tmp_path / "f.csv")
    assert len(pd.read_csv(c)) == 4


def test_missing_storage_and_study(tmp_path, study_db):
    with pytest.raises(StorageError, match="no such SQLite file"):
        results.load_trials(f"sqlite:///{tmp_path / 'nope.db'}", "x")
    assert not (tmp_path / "nope.db").exists()
    url, _ = study_db
    with pytest.raises(results.ResultsError, match="studies there: demo"):
        results.load_trials(url, "other")
    with pytest.raises(StorageError, match="not a URL"):
        results.list_studies(str(tmp_path / "file.txt"))


def test_plain_optuna_study_is_readable(tmp_path):
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    s = optuna.create_study(storage=url, study_name="p", directions=["minimize", "minimize"])
    s.optimize(lambda t: (t.suggest_float("x", 0, 1), 1 - t.suggest_float("y", 0, 1)), n_trials=5)
    df = results.load_trials(url, "p")
    assert {"value_0", "value_1", "arch.x", "arch.y"} <= set(df.columns)
    assert df["feasible"].all()
    assert len(results.pareto_front(df)) >= 1


def test_results_import_does_not_import_torch():
    code = "import sys, archlab.search.results, archlab.search; archlab.search.list_studies; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
