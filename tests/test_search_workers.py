"""Several workers on one study: SQLite (forked workers), PostgreSQL (independent processes),
a worker killed with SIGKILL and restarted, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest

from archlab.search import run_search

optuna.logging.set_verbosity(optuna.logging.WARNING)

WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from archlab.search import run_search
    from archlab.spaces.library import mlp_space

    url, name, total, seed, sleep, marks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    block_after = int(sys.argv[7])  # >= 0: the call after this many stays in the objective (to be killed there)
    space = mlp_space(n_layer=(1, 4), width=(16, 32, 64, 128, 256))
    calls = [0]

    def size(a):
        Path(marks, f"{os.getpid()}.running").write_text(a.key)
        if calls[0] == block_after:
            Path(marks, f"{os.getpid()}.blocked").write_text(a.key)
            time.sleep(300)
        calls[0] += 1
        time.sleep(sleep)
        return float(sum(l["width"] for l in a["layers"]))

    run_search(space, {"size": ("min", size), "depth": ("max", lambda a: float(a["n_layer"]))},
               n_trials=total, storage=url, study_name=name, seed=seed, sampler="random",
               heartbeat_interval=1, grace_period=3)
""")


def _start(tmp_path: Path, url: str, name: str, total: int, seed: int, sleep: float,
           block_after: int = -1) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    env = {**os.environ, "ARCHLAB_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, str(script), url, name, str(total), str(seed), str(sleep), str(marks), str(block_after)],
                            env=env, stderr=subprocess.PIPE, text=True)


def _check_exact(study: optuna.Study, total: int) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == total
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.user_attrs.get("arch") and t.user_attrs.get("metrics") for t in complete)
    return trials


def test_four_forked_workers_on_sqlite(tmp_path, optuna_path):
    from archlab.spaces.library import mlp_space

    space = mlp_space(n_layer=(1, 4), width=(16, 32, 64, 128, 256))
    pids: set[int] = set()

    def size(a):
        pids.add(os.getpid())
        time.sleep(0.02)
        return float(sum(layer["width"] for layer in a["layers"]))

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = run_search(space, {"size": ("min", size), "depth": ("max", lambda a: float(a["n_layer"]))},
                       n_trials=32, storage=url, study_name="w4", seed=0, workers=4, sampler="random")
    trials = _check_exact(study, 32)
    assert len(trials) == 32  # no failed or surplus trials
    assert not pids  # the work happened in the forked workers, not here


@pytest.mark.postgres
@pytest.mark.slow
def test_three_processes_on_postgres(tmp_path):
    url = os.environ.get("ARCHLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("ARCHLAB_TEST_POSTGRES_URL is not set (scripts/test.sh sets it from scripts/postgres.sh)")
    name = f"pg-{uuid.uuid4().hex[:8]}"
    procs = [_start(tmp_path, url, name, 24, seed, 0.05) for seed in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=150)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name=name, storage=url)
    trials = _check_exact(study, 24)
    assert len(trials) == 24


@pytest.mark.slow
def test_kill_9_one_of_two_workers_then_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    total = 14
    # create the study once, before any worker starts
    from archlab.spaces.library import mlp_space

    run_search(mlp_space(n_layer=(1, 4), width=(16, 32, 64, 128, 256)),
               {"size": ("min", lambda a: 0.0), "depth": ("max", lambda a: 0.0)},
               n_trials=0, storage=url, study_name="k")
    a = _start(tmp_path, url, "k", total, 1, 0.4, block_after=3)  # its 4th trial stays in the objective
    b = _start(tmp_path, url, "k", total, 2, 0.4)
    storage = optuna.storages.RDBStorage(url)
    blocked = tmp_path / "marks" / f"{a.pid}.blocked"
    deadline = time.monotonic() + 90
    while not blocked.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert blocked.exists(), "worker A never reached its 4th trial"
    a.send_signal(signal.SIGKILL)  # mid-trial: A is inside the objective
    a.wait()
    killed_key = blocked.read_text()
    before = {t.number for t in optuna.load_study(study_name="k", storage=storage).get_trials() if t.state.name == "COMPLETE"}
    a2 = _start(tmp_path, url, "k", total, 3, 0.4)
    for p in (b, a2):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="k", storage=storage)
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == total
    assert before <= {t.number for t in complete}
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["arch"] == killed_key
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


def test_ctrl_c_leaves_no_running_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    p = _start(tmp_path, url, "c", 50, 0, 0.3)
    marks = tmp_path / "marks" / f"{p.pid}.running"
    deadline = time.monotonic() + 60
    while not marks.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode != 0
    trials = optuna.load_study(study_name="c", storage=url).get_trials()
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert any(t.state.name == "FAIL" for t in trials)


@pytest.mark.parametrize("sampler", ["ehvi", "predictor"])
def test_planning_workers_never_evaluate_one_architecture_twice(tmp_path, sampler):
    """Two forked workers plan one at a time and see each other's planned architecture, so with
    ``count="distinct"`` every completed trial is a distinct architecture, none answered twice.
    The hint (ehvi) and the predictor's inner evolution make planning slow enough that, without
    that, the workers' plans overlap on the same study state."""
    from archlab.spaces.library import mlp_space

    space = mlp_space(n_layer=(1, 3), width=(16, 32, 64, 128))

    def slow_hint(archs):
        time.sleep(0.002 * len(archs))
        return [float(a["n_layer"]) for a in archs]

    options = ({"hints": [slow_hint], "n_startup": 2, "n_random": 30} if sampler == "ehvi" else
               {"n_startup": 4, "batch_size": 3, "population": 16, "generations": 3})
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = run_search(space, {"size": ("min", lambda a: float(sum(layer["width"] for layer in a["layers"]))),
                               "depth": ("max", lambda a: float(a["n_layer"]))},
                       n_trials=14, count="distinct", storage=url, study_name=f"{sampler}2", seed=0, workers=2,
                       sampler=sampler, sampler_options=options)
    trials = _check_exact(study, 14)
    keys = [t.user_attrs["arch"] for t in trials]
    assert len(set(keys)) == 14 and not [t for t in trials if "reused_from" in t.user_attrs]
