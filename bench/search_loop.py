"""Loop overhead of ``run_search`` against plain Optuna (used by ``bench/search.py --loop``).

Trials/s with a trivial objective on the default storage (SQLite with heartbeats), archlab's
``run_search`` against plain Optuna with the same sampler (NSGA-II, same seed and population)
and the same storage settings, in the same run: a fresh database file per run, runs alternating
between the two, at 1,000 trials (two runs each) and 10,000 (one run each); ``quick``: 50 and 150.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings


def _plain_optuna(space, url: str, n: int) -> None:
    """Plain Optuna as a user would write it: the same storage settings as archlab's default
    (SQLite, heartbeat 10 s, grace 30 s, stale trials retried), the same NSGA-II (seed 0,
    population 50) and the same trivial objective through the same ``space.suggest``."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = optuna.storages.RDBStorage(url, heartbeat_interval=10, grace_period=30,
                                        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
                                        engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.create_study(storage=st, study_name="s", directions=["minimize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=50))

    def objective(trial):
        a = space.suggest(trial)
        return float(a["n_layer"]), float(a["n_layer"])

    study.optimize(objective, n_trials=n)


def _archlab(space, url: str, n: int) -> None:
    from archlab.search import run_search

    def trivial(arch):
        return float(arch["n_layer"])

    run_search(space, {"x": ("min", trivial), "y": ("min", trivial)}, n_trials=n, storage=url, study_name="s",
               sampler="nsga2", seed=0, sampler_options={"population_size": 50}, show_progress=False)


def overhead(quick: bool, plan: dict[int, int] | None = None) -> dict:
    """Trials/s of ``run_search`` and of plain Optuna, each on a fresh SQLite file, timed from
    opening the storage to the last trial. Runs alternate (archlab, plain, plain, archlab, ...)
    so drifting machine load falls on both; the ratio is total archlab time / total plain time."""
    import optuna

    from archlab.spaces.library import mlp_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = mlp_space(n_layer=(1, 4), width=(32, 64, 128, 256))
    plan = plan or ({50: 2, 150: 1} if quick else {1000: 2, 10000: 1})  # trials: (archlab, plain) pairs
    runners = {"archlab": _archlab, "optuna": _plain_optuna}
    result: dict = {"storage": "sqlite file (archlab's default: RDB, heartbeat 10 s, grace 30 s, stale trials retried)",
                    "sampler": "nsga2 (seed 0, population 50)", "objective": "trivial: (n_layer, n_layer)",
                    "timed": "open storage + create study + all trials, fresh database file each run",
                    "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: imports and first-use costs of both
        for name, fn in runners.items():
            fn(space, f"sqlite:///{tmp}/warm-{name}.db", 20)
    for n, pairs in plan.items():
        times: dict[str, list[float]] = {"archlab": [], "optuna": []}
        order = [name for i in range(pairs) for name in (("archlab", "optuna") if i % 2 == 0 else ("optuna", "archlab"))]
        for i, name in enumerate(order):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                runners[name](space, f"sqlite:///{tmp}/{name}-{i}.db", n)
                times[name].append(time.perf_counter() - t0)
            print(f"  overhead n={n} {name}: {times[name][-1]:.1f} s ({n / times[name][-1]:.1f} trials/s)", file=sys.stderr)
        ta, tp = sum(times["archlab"]), sum(times["optuna"])
        result["runs"][str(n)] = {
            "archlab_trials_per_s": n * pairs / ta, "optuna_trials_per_s": n * pairs / tp, "overhead_ratio": ta / tp,
            "archlab_wall_s": [round(t, 2) for t in times["archlab"]], "optuna_wall_s": [round(t, 2) for t in times["optuna"]],
            "order": order,
        }
        print(f"  overhead n={n}: archlab {n * pairs / ta:.1f}/s, optuna {n * pairs / tp:.1f}/s, ratio {ta / tp:.3f}",
              file=sys.stderr)
    result["goal"] = "archlab time per trial <= 1.2x plain Optuna"
    result["goal_met"] = all(r["overhead_ratio"] <= 1.2 for r in result["runs"].values())
    return result
