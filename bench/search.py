"""Search benchmark: sample efficiency against an exact Pareto front, and loop overhead.

1. Sample efficiency. The space is a NAS-Bench-201-shaped cell (6 edges x 5 ops = 15,625
   architectures), small enough to enumerate. Objectives are cheap analytic proxies with
   interactions between edges: ``acc`` (maximise; concave in the ops' strengths, with a bonus
   for convolutions on consecutive edges and a penalty for an all-"none" path) and
   ``latency_ms`` (minimise; op costs plus a depth term). The exact front is found by
   enumeration. Hypervolume uses the exact front's bounds for normalisation and reference 1.1
   per axis; each sampler's value is divided by the exact front's hypervolume. Evaluations are
   *unique* architectures (repeats are reused from the study, not evaluated). Reported: the
   median over seeds at 50/100/200/500/1000 evaluations, and the median number of evaluations
   to reach 0.99 (random search's count also from an exact without-replacement simulation
   over the whole space, so it is known even beyond 1000).
2. Loop overhead: trials/s with a trivial objective on the default storage (SQLite with
   heartbeats), archlab's ``run_search`` against plain Optuna with the same sampler (NSGA-II,
   same seed and population) and the same storage settings, in the same run: a fresh database
   file per run, runs alternating between the two, at 1,000 trials (two runs each) and 10,000
   (one run each).

``--quick`` (under two minutes): budgets up to 200, 2 seeds, overhead at 50 and 150 trials.
Writes ``bench/results/search.json`` (atomically).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
STRENGTH = {"none": 0.0, "skip_connect": 0.45, "nor_conv_1x1": 0.7, "nor_conv_3x3": 1.0, "avg_pool_3x3": 0.3}
COST = {"none": 0.0, "skip_connect": 0.05, "nor_conv_1x1": 0.35, "nor_conv_3x3": 1.0, "avg_pool_3x3": 0.2}


def acc(arch) -> float:
    ops = [e["op"] for e in arch["edges"]]
    s = np.array([STRENGTH[o] for o in ops])
    w = np.array([1.0, 0.8, 1.2, 0.6, 1.1, 0.9])
    base = 1 - np.exp(-1.3 * float(s @ w))
    pairs = sum(1 for a, b in itertools.pairwise(ops) if "conv" in a and "conv" in b)
    dead = ops[0] == "none" and ops[3] == "none" and ops[5] == "none"
    return float(0.9 * base + 0.02 * pairs - (0.3 if dead else 0.0))


def latency(arch) -> float:
    ops = [e["op"] for e in arch["edges"]]
    return float(0.2 + sum(COST[o] * (1 + 0.15 * i) for i, o in enumerate(ops)) + 0.05 * sum(o != "none" for o in ops))


def exact_problem(space):
    from archlab.search.pareto import hypervolume_of, non_dominated_mask

    archs = list(space.enumerate())
    Y = np.array([[-acc(a), latency(a)] for a in archs])
    front = Y[non_dominated_mask(Y)]
    lo, hi = front.min(axis=0), front.max(axis=0)
    scale = (lo, np.where(hi > lo, hi - lo, 1.0))
    ref = np.full(2, 1.1)
    hv_exact = hypervolume_of((front - scale[0]) / scale[1], ref)
    return archs, Y, scale, ref, hv_exact


class Curve:
    """Normalised hypervolume after each unique evaluation (incremental 2-D front)."""

    def __init__(self, scale, ref, hv_exact):
        self.scale, self.ref, self.hv_exact = scale, ref, hv_exact
        self.front = np.zeros((0, 2))
        self.hv = 0.0
        self.values: list[float] = []

    def add(self, y: np.ndarray) -> None:
        from archlab.search.pareto import hypervolume_of

        z = (y - self.scale[0]) / self.scale[1]
        if np.all(z < self.ref) and not (len(self.front) and np.any(np.all(self.front <= z, axis=1))):
            self.front = np.vstack([self.front[~np.all(z <= self.front, axis=1)], z])
            self.hv = hypervolume_of(self.front, self.ref)
        self.values.append(self.hv / self.hv_exact)


def run_sampler(space, sampler: str, seed: int, max_evals: int, scale, ref, hv_exact) -> list[float]:
    import optuna

    from archlab.search import run_search

    curve = Curve(scale, ref, hv_exact)
    seen: set[str] = set()

    def stop_at_budget(study, trial):
        key = trial.user_attrs.get("arch")
        if trial.state.name == "COMPLETE" and key not in seen:
            seen.add(key)
            curve.add(np.array([-trial.values[0], trial.values[1]]))
        if len(seen) >= max_evals:
            study.stop()

    run_search(space, {"acc": ("max", acc), "latency_ms": ("min", latency)}, n_trials=4 * max_evals,
               storage=optuna.storages.InMemoryStorage(), study_name=f"{sampler}-{seed}", sampler=sampler,
               seed=seed, callbacks=[stop_at_budget], show_progress=False)
    return curve.values


def random_without_replacement(Y, scale, ref, hv_exact, seed: int, target: float) -> int:
    curve = Curve(scale, ref, hv_exact)
    for i in np.random.default_rng(seed).permutation(len(Y)):
        curve.add(Y[i])
        if curve.values[-1] >= target:
            return len(curve.values)
    return len(curve.values)


def first_reach(values: list[float], target: float) -> int | None:
    hit = np.flatnonzero(np.array(values) >= target - 1e-12)
    return int(hit[0] + 1) if hit.size else None


def efficiency(quick: bool) -> dict:
    from archlab.spaces.library import cell_space

    space = cell_space("nb201_cell", n_edges=6, ops=OPS)
    archs, Y, scale, ref, hv_exact = exact_problem(space)
    budgets = [50, 100, 200] if quick else [50, 100, 200, 500, 1000]
    seeds = list(range(2 if quick else 5))
    samplers = ["nsga2", "tpe", "random", "predictor"]
    target = 0.99
    from archlab.search.pareto import non_dominated_mask

    out: dict = {"space_size": len(archs), "exact_front_size": len(np.unique(Y[non_dominated_mask(Y)], axis=0)),
                 "budgets": budgets, "seeds": seeds, "target": target, "samplers": {}}
    for name in samplers:
        t0 = time.perf_counter()
        curves = [run_sampler(space, name, s, budgets[-1], scale, ref, hv_exact) for s in seeds]
        reach = [first_reach(c, target) for c in curves]
        out["samplers"][name] = {
            "hv_ratio_median": {str(b): float(np.median([c[min(b, len(c)) - 1] for c in curves])) for b in budgets},
            "evals_to_target": reach,
            "evals_to_target_median": (float(np.median(reach)) if all(r is not None for r in reach) else None),
            "wall_s": round(time.perf_counter() - t0, 2),
        }
        print(f"  {name:9s} " + " ".join(f"{b}:{v:.4f}" for b, v in out["samplers"][name]["hv_ratio_median"].items())
              + f"  reach {target}: {reach}", file=sys.stderr)
    rnd = [random_without_replacement(Y, scale, ref, hv_exact, 1000 + s, target) for s in range(5)]
    out["random_exact_evals_to_target"] = rnd
    out["random_exact_evals_to_target_median"] = float(np.median(rnd))
    best = [v["evals_to_target_median"] for v in out["samplers"].values() if v["evals_to_target_median"] is not None]
    out["best_evals_to_target"] = min(best) if best else None
    out["best_vs_random_evals"] = (min(best) / out["random_exact_evals_to_target_median"]) if best else None
    out["goal"] = "best sampler reaches 0.99 of the exact hypervolume with <= 1/3 of random search's evaluations"
    out["goal_met"] = bool(best) and out["best_vs_random_evals"] <= 1 / 3
    return out


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (under two minutes)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.json"))
    args = parser.parse_args()
    import os

    os.environ.setdefault("ARCHLAB_PROGRESS", "0")
    t0 = time.perf_counter()
    doc = {
        "benchmark": "search",
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "efficiency": efficiency(args.quick),
        "overhead": overhead(args.quick),
    }
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    from archlab.spaces.io import atomic_write_json

    atomic_write_json(args.out, json.loads(json.dumps(doc)))
    print(f"wrote {args.out} in {doc['wall_s']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
