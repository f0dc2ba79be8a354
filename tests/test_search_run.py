"""run_search: objectives, constraints, samplers, reuse by arch key, study attrs, bad input, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest

from archlab.search import (
    SAMPLERS,
    SearchError,
    StorageError,
    load_trials,
    pareto_front,
    run_search,
)
from archlab.search.settings import parse_duration
from archlab.spaces.library import cell_space, mlp_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = mlp_space(n_layer=(1, 3), width=(16, 32, 64, 128))


def width(a) -> float:
    return float(sum(layer["width"] for layer in a["layers"]))


def error(a) -> float:
    return 1.0 / width(a) + 0.01 * a["n_layer"]


OBJ = {"error": ("min", error), "size": ("min", width)}


def mem() -> optuna.storages.InMemoryStorage:
    return optuna.storages.InMemoryStorage()


def test_study_contract_and_trial_records(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = run_search(SPACE, OBJ, n_trials=12, storage=url, study_name="s", seed=0, sampler="random",
                       constraints={"size": 200}, metrics={"depth": lambda a: float(a["n_layer"])})
    info = study.user_attrs["archlab"]
    assert info["objectives"] == [{"name": "error", "direction": "minimize"}, {"name": "size", "direction": "minimize"}]
    assert info["constraints"] == {"size": 200.0}
    assert info["sampler"] == "random" and info["space"] == SPACE.to_json()
    assert set(info) >= {"version", "experiment", "files"}
    trials = study.get_trials()
    assert len(trials) == 12 and all(t.state.name == "COMPLETE" for t in trials)
    for t in trials:
        arch = SPACE.validate(t.user_attrs["arch"])
        assert SPACE.to_params(arch) == t.params
        m = t.user_attrs["metrics"]
        assert t.values == [pytest.approx(error(arch)), pytest.approx(width(arch))]
        assert m["depth"] == arch["n_layer"]
        assert t.constraints == {"size": pytest.approx(width(arch) - 200)}
    df = load_trials(url, "s")
    assert df["feasible"].tolist() == [width(SPACE.validate(a)) <= 200 for a in df["arch"]]
    assert "metric.depth" in df.columns
    assert pareto_front(df)["size"].max() <= 200


def test_trial_attrs_on_sqlite_complete_reused_and_failed(tmp_path):
    # on RDB storages the attrs are written with the trial's final state: check every case
    url = f"sqlite:///{tmp_path / 'study.db'}"

    calls = []

    def flaky(a):
        calls.append(a.key)
        if len(calls) == 25:
            raise ValueError("boom")
        return width(a)

    with pytest.raises(ValueError, match="boom"):
        run_search(SPACE, {"error": ("min", error), "size": ("min", flaky)}, n_trials=200, storage=url,
                   study_name="f", seed=0, sampler="random", constraints={"size": 100})
    trials = optuna.load_study(study_name="f", storage=url).get_trials()
    failed = trials[-1]
    assert failed.state.name == "FAIL" and set(failed.user_attrs) == {"arch", "fail_reason"}
    assert failed.user_attrs["fail_reason"] == "ValueError: boom"
    assert SPACE.to_params(SPACE.validate(failed.user_attrs["arch"])) == failed.params
    done = trials[:-1]
    assert done and all(t.state.name == "COMPLETE" for t in done)
    first: dict[str, optuna.trial.FrozenTrial] = {}
    for t in done:
        arch = SPACE.validate(t.user_attrs["arch"])
        assert SPACE.to_params(arch) == t.params
        assert t.user_attrs["metrics"] == {"error": pytest.approx(error(arch)), "size": width(arch)}
        assert t.constraints == {"size": pytest.approx(width(arch) - 100)}
        if arch.key in first:
            assert t.user_attrs["reused_from"] == first[arch.key].number
        else:
            assert "reused_from" not in t.user_attrs
            first[arch.key] = t
    assert len(first) < len(done)  # some trials were reused


def test_progress_bar_front_and_hypervolume_match_the_results_api(tmp_path):
    from archlab.search import hypervolume
    from archlab.search.progress import SearchProgress

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = run_search(SPACE, OBJ, n_trials=30, storage=url, study_name="p", seed=0, sampler="random",
                       constraints={"size": 200}, show_progress=False)
    bar = SearchProgress(study, 30, enabled=True, refresh_s=0.0)
    df = load_trials(url, "p")
    assert bar.bar.n == 30
    assert f"front={len(pareto_front(df))}" in bar.bar.postfix
    assert f"hv={hypervolume(df):.4f}" in bar.bar.postfix
    bar.step()  # a refresh with nothing new keeps the numbers
    assert f"hv={hypervolume(df):.4f}" in bar.bar.postfix
    bar.close()


def test_rerun_continues_to_the_total(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(SPACE, OBJ, n_trials=5, storage=url, study_name="s", seed=1)
    study = run_search(SPACE, OBJ, n_trials=9, storage=url, study_name="s", seed=2)
    assert [t.number for t in study.get_trials()] == list(range(9))
    assert all(t.state.name == "COMPLETE" for t in study.get_trials())
    again = run_search(SPACE, OBJ, n_trials=9, storage=url, study_name="s", seed=3)
    assert len(again.get_trials()) == 9


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs_and_never_reevaluates(sampler):
    space = cell_space(n_edges=3, ops=("a", "b", "c"))  # 27 archs: repeats are certain
    calls: list[str] = []

    def f1(a):
        calls.append(a.key)
        return float(sum(e["op"] == "a" for e in a["edges"]))

    def f2(a):
        return float(sum(e["op"] == "c" for e in a["edges"]))

    opts = {"n_startup": 5, "batch_size": 3, "population": 12, "generations": 3} if sampler == "predictor" else None
    if sampler == "gp":
        opts = {"n_startup_trials": 4}
    n = 40 if sampler != "gp" else 6
    study = run_search(space, {"a": ("max", f1), "c": ("min", f2)}, n_trials=n, storage=mem(), study_name=sampler,
                       sampler=sampler, seed=0, sampler_options=opts)
    trials = study.get_trials()
    assert len(trials) == n and all(t.state.name == "COMPLETE" for t in trials)
    assert len(calls) == len(set(calls))  # each arch evaluated once
    keys = [t.user_attrs["arch"] for t in trials]
    assert len(set(keys)) == len(calls)
    first = {}
    for t in trials:
        k = t.user_attrs["arch"]
        if k in first:
            assert t.user_attrs["reused_from"] == first[k].number
            assert t.values == first[k].values
        else:
            first[k] = t


def test_same_seed_same_search():
    runs = [
        [t.user_attrs["arch"] for t in run_search(SPACE, OBJ, n_trials=15, storage=mem(), study_name="x", seed=7).get_trials()]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_three_objectives_and_maximize():
    study = run_search(SPACE, {"error": ("min", error), "size": ("min", width), "depth": ("max", lambda a: float(a["n_layer"]))},
                       n_trials=20, storage=mem(), study_name="x", seed=0, sampler="nsga3")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE", "MAXIMIZE"]
    assert len(study.get_trials()) == 20


def test_predictor_sampler_beats_random_on_a_front():
    space = cell_space(n_edges=6, ops=("a", "b", "c", "d"))  # 4096 archs
    w = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}

    def acc(a):
        return float(sum(w[e["op"]] * (i + 1) for i, e in enumerate(a["edges"])))

    def cost(a):
        return float(sum(w[e["op"]] ** 1.5 for e in a["edges"]))

    def hv_of(sampler, seed):
        s = run_search(space, {"acc": ("max", acc), "cost": ("min", cost)}, n_trials=60, storage=mem(),
                       study_name="b", sampler=sampler, seed=seed,
                       sampler_options={"n_startup": 15, "batch_size": 5, "population": 32, "generations": 6}
                       if sampler == "predictor" else None)
        Y = np.array([[-t.values[0], t.values[1]] for t in s.get_trials()])
        from archlab.search.pareto import hypervolume_of

        return hypervolume_of(Y, np.array([1.0, 30.0]))

    pred = np.median([hv_of("predictor", s) for s in range(2)])
    rand = np.median([hv_of("random", s) for s in range(2)])
    assert pred > rand



def test_predictor_sampler_counts_another_workers_running_arch_in_the_front():
    """A batch is chosen against the front plus what other workers are running (at its predicted
    values): the gain a running trial will bring is not chased again by an arch equal to it."""
    from archlab.search.plan_sampler import PLANNED
    from archlab.search.predictor_sampler import PredictorSampler

    space = cell_space(n_edges=3, ops=("a", "b", "c"))  # 27 archs; permutations tie in value

    def losses(a):  # maximise the a's, minimise their squared count
        k = sum(e["op"] == "a" for e in a["edges"])
        return [-float(k), float(k * k)]

    study = optuna.create_study(storage=mem(), directions=["maximize", "minimize"])
    sampler = PredictorSampler(space, seed=0, n_startup=1, batch_size=1, population=27, generations=4, explore=0.0)
    sampler._fit = lambda archs, Y: (lambda cands: np.array([losses(a) for a in cands]))
    every = list(space.enumerate(limit=27))
    done = [a for a in every if {e["op"] for e in a["edges"]} in ({"c"}, {"a"})]
    for a in done:
        v = losses(a)
        study.add_trial(optuna.trial.create_trial(values=[-v[0], v[1]], params={}, distributions={},
                                                  user_attrs={"arch": a.key}))
    archs, Y, feas, keys, pending = sampler._evaluated(study)
    assert len(archs) == 2 and pending == []
    alone = sampler._plan(archs, Y, feas, keys)[0]
    twin = next(a for a in every if a.key != alone.key and losses(a) == losses(alone))
    running = study.ask()
    running.set_user_attr(PLANNED, twin.key)
    archs, Y, feas, keys, pending = sampler._evaluated(study)
    assert [a.key for a in pending] == [twin.key] and twin.key in keys
    beside = sampler._plan(archs, Y, feas, keys, pending)[0]
    assert losses(beside) != losses(alone)  # the running twin already brings that gain


# bad input ------------------------------------------------------------------------------
def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(SearchError, match="unknown sampler 'cmaes'; allowed: nsga2"):
        run_search(SPACE, OBJ, n_trials=1, storage=mem(), sampler="cmaes")
    with pytest.raises(SearchError, match="unknown built-in 'flops'"):
        run_search(SPACE, {"e": ("min", "flops")}, n_trials=1, storage=mem())
    with pytest.raises(SearchError, match="direction 'down'"):
        run_search(SPACE, {"e": ("down", error)}, n_trials=1, storage=mem())
    with pytest.raises(SearchError, match="constraint on unknown metric 'latency'"):
        run_search(SPACE, OBJ, n_trials=1, storage=mem(), constraints={"latency": 3})
    with pytest.raises(StorageError, match="cannot open storage postgresql"):
        run_search(SPACE, OBJ, n_trials=1, storage="postgresql+psycopg2://u:secret@127.0.0.1:1/db", study_name="x")
    with pytest.raises(SearchError, match=r"objective .inherited. needs a task in its metric sources \(pass run_search\(sources="):
        run_search(SPACE, {"e": ("min", "inherited")}, n_trials=1, storage=mem())
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(SPACE, OBJ, n_trials=2, storage=url, study_name="s")
    with pytest.raises(SearchError, match=r"was created for space 'mlp'.*not for this space 'cell'"):
        run_search(cell_space(), OBJ, n_trials=2, storage=url, study_name="s")
    with pytest.raises(SearchError, match="has objectives"):
        run_search(SPACE, {"error": ("min", error), "other": ("min", width)}, n_trials=2, storage=url, study_name="s")


def test_parse_duration():
    assert parse_duration("8h") == 8 * 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(SearchError, match="duration like 8h"):
        parse_duration("soon")


# command line ---------------------------------------------------------------------------
def _experiment(tmp_path, search: dict[str, object]) -> str:
    path = tmp_path / "exp.py"
    path.write_text(textwrap.dedent(f"""
        from archlab import Experiment
        from archlab.spaces.library import mlp_space
        from archlab.supernets.tasks import DigitsTask

        def width(a):
            return float(sum(layer["width"] for layer in a["layers"]))

        search = {search!r}
        search["objectives"] = {{"size": ("min", width), "depth": ("max", lambda a: float(a["n_layer"]))}}
        exp = Experiment("cli", mlp_space(n_layer=(1, 2), width=(16, 32)), family="mlp", task=DigitsTask(),
                         search=search, runs_dir={str(tmp_path / 'runs')!r})
    """))
    return str(path)


def test_cli_search_runs_and_continues(tmp_path, run_cli):
    exp = _experiment(tmp_path, {"sampler": "random", "seed": 0})
    code, out, err = run_cli("search", exp, "--trials", "4")
    assert code == 0, err
    assert "4 complete trials" in out
    code, out, err = run_cli("search", exp, "--trials", "6")
    assert code == 0 and "6 complete trials" in out
    db = tmp_path / "runs" / "cli" / "study.db"
    info = load_trials(f"sqlite:///{db}", "cli").attrs["archlab"]
    assert info["experiment"] == "cli" and info["experiment_file"].endswith("exp.py")


@pytest.mark.parametrize(
    ("search", "args", "message"),
    [
        ({"trails": 3}, [], "unknown key 'trails'"),
        ({}, ["--sampler", "bogus"], "unknown sampler 'bogus'"),
        ({"constraints": {"nope": 1}}, ["--trials", "1"], "constraint on unknown metric 'nope'"),
        ({}, ["--trials", "1", "--storage", "postgresql+psycopg2://x@127.0.0.1:1/db"], "cannot open storage"),
        ({}, ["--timeout", "soon"], "duration like"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, run_cli, search, args, message):
    code, _, err = run_cli("search", _experiment(tmp_path, search), *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_export_bad_trial(tmp_path, run_cli):
    exp = _experiment(tmp_path, {"sampler": "random", "seed": 0})
    assert run_cli("search", exp, "--trials", "2")[0] == 0
    db = str(tmp_path / "runs" / "cli" / "study.db")
    code, _, err = run_cli("export", db, "cli", "7", str(tmp_path / "out"), "--experiment", exp)
    assert code == 2 and "has no trial 7" in err
    code, _, err = run_cli("export", db, "nope", "0", str(tmp_path / "out"), "--experiment", exp)
    assert code == 2 and "no study named 'nope'" in err
    assert json.loads(load_trials(db, "cli")["arch"].iloc[0])


@pytest.mark.slow
def test_cli_export_writes_the_trained_subnet(tmp_path, run_cli):
    import torch

    from archlab import load_subnet
    from archlab.experiment import load_experiment

    spec = _experiment(tmp_path, {"sampler": "random", "seed": 0})
    exp = load_experiment(spec)
    exp.train_supernet(steps=2)
    assert run_cli("search", spec, "--trials", "3")[0] == 0
    db = str(tmp_path / "runs" / "cli" / "study.db")
    df = load_trials(db, "cli")
    code, _out, err = run_cli("export", db, "cli", "1", str(tmp_path / "out"), "--experiment", spec)
    assert code == 0, err
    sub = load_subnet(tmp_path / "out", preprocess=False)  # x below is preprocessed already
    net = exp.load_supernet()
    arch = exp.space.validate(df.loc[1, "arch"])
    x = net.example_input(4)
    ref = net.extract(arch).eval()
    with torch.no_grad():
        assert torch.allclose(sub.eval()(x), ref(x), atol=1e-5)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["meta"]["trial"] == 1 and config["meta"]["arch"] == df.loc[1, "arch"]


def test_a_progress_bar_makes_no_named_semaphore():
    # tqdm's default lock is also a multiprocessing lock: a named semaphore, which a search worker
    # killed with kill -9 leaked (the resource tracker then warned about it)
    code = textwrap.dedent("""
        import multiprocessing
        from multiprocessing import resource_tracker
        multiprocessing.set_start_method("spawn")  # as in a search worker: its semaphores are named
        made = []
        resource_tracker.register = lambda name, rtype: made.append(rtype)
        from archlab.core.progress import progress
        for disable in (True, False):
            bar = progress(total=3, disable=disable)
            bar.update(1)
            bar.close()
        print(made)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
