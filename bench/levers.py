"""One ``ehvi`` sampler option measured against the defaults on NAS-Bench-201, paired by seed.

This is how a row of ``docs/search_measurements.md`` is measured::

    python bench/levers.py NAME '{"acq_scale": "value"}' [--seeds 0-19] [--budget 100]

runs ``bench/search.py``'s main sampler (``ehvi+lat``: latency from a LUT predictor fitted on
150 profiled cells) with those sampler options added, on the eight (accuracy, device) pairs over
the seeds, and pairs each run's gap ``1 - HV/HV_exact`` after 50 and 100 distinct evaluations
(and 200, 300 up to ``--budget``) with the defaults' gap on the same pair and seed.

The defaults' gaps are the ``none`` arm that ``bench/zero_cost.py`` stores
(``bench/results/zero_cost.json``, budgets 50 and 100). They are checked first: the defaults
are rerun on the first seed on every pair, and the script stops if any gap differs from the
stored one (the code has changed since; rerun ``bench/zero_cost.py``, or pass
``--rerun-defaults`` to run both arms here, which a budget beyond 100 needs anyway).

Writes the lever's entry, under NAME, into ``bench/results/levers.json`` (other names kept;
written atomically, under a lock on its folder): the options, seeds and budget, per run the
gaps of both arms, per pair the medians, and pooled over pairs and seeds the mean paired
difference (option minus defaults: negative is better) with its 95 % bootstrap interval and
how many runs the option made better. ``--quick``: a smoke run (2 pairs, 2 seeds, 50 evaluations, both arms rerun).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import sys
import time
from multiprocessing import get_context
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one process, one thread: the machine is shared

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb201 import bench_search, find_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "levers.json"
STORED = ROOT / "bench" / "results" / "zero_cost.json"
BUDGETS = (50, 100, 200, 300)
N_PAIRS = 8



def _job(args: tuple) -> tuple[str, int, dict[str, float]]:
    path, pi, seed, options, budget = args
    import optuna
    from nb201 import load_table

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    B = bench_search()
    prob = B.problems(load_table(path), False, [pi])[0]
    curve, _, _ = B.run_curve(prob, B.MAIN, seed, budget, dict(options))
    return prob.name, seed, {str(b): curve.gap_at(b) for b in BUDGETS if b <= budget}


def run_arm(path: str, options: dict, seeds: list[int], pairs: list[int], budget: int,
            procs: int) -> dict[str, dict[int, dict[str, float]]]:
    """``{pair: {seed: {budget: gap}}}`` of ``ehvi+lat`` with ``options`` added."""
    jobs = [(path, pi, s, options, budget) for s in seeds for pi in pairs]
    out: dict[str, dict[int, dict[str, float]]] = {}

    def done(name: str, seed: int, gaps: dict[str, float]) -> None:
        out.setdefault(name, {})[seed] = gaps
        print(f"  {name} seed {seed}: " + ", ".join(f"{b}: {g:.4f}" for b, g in gaps.items()),
              file=sys.stderr, flush=True)

    if procs <= 1:  # in this process (a test's, where a spawned child could not import this module)
        for job in jobs:
            done(*_job(job))
        return out
    with get_context("spawn").Pool(procs) as pool:
        for result in pool.imap_unordered(_job, jobs):
            done(*result)
    return out


def stored_defaults(path: Path = STORED) -> dict[str, dict[int, dict[str, float]]]:
    """The defaults' per-seed gaps stored by ``bench/zero_cost.py`` (its ``none`` arm)."""
    doc = json.loads(Path(path).read_text())["search"]
    seeds = doc["seeds"]
    out: dict[str, dict[int, dict[str, float]]] = {}
    for name, per_budget in doc["pairs"].items():
        for b, entry in per_budget.items():
            for s, g in zip(seeds, entry["gaps"]["none"]):
                out.setdefault(name, {}).setdefault(int(s), {})[b] = float(g)
    return out


def mismatches(stored: dict[str, dict[int, dict[str, float]]], rerun: dict[str, dict[int, dict[str, float]]],
               tol: float = 1e-12) -> list[str]:
    """Where the rerun defaults differ from the stored ones (``pair seed budget: stored vs rerun``)."""
    bad = []
    for name, per_seed in rerun.items():
        for s, gaps in per_seed.items():
            for b, g in gaps.items():
                ref = stored.get(name, {}).get(s, {}).get(b)
                if ref is None or abs(ref - g) > tol:
                    bad.append(f"{name} seed {s} at {b}: stored {ref} vs rerun {g:.6g}")
    return bad


def paired(option: dict[str, dict[int, dict[str, float]]], defaults: dict[str, dict[int, dict[str, float]]],
           seeds: list[int]) -> dict:
    """Per pair the median gaps of both arms; pooled the mean of per-run differences (option
    minus defaults) with its 95 % bootstrap interval (runs resampled) and the runs made better."""
    from archlab.core.stats import bootstrap_ci

    budgets = sorted({b for per_seed in option.values() for g in per_seed.values() for b in g}, key=int)
    out: dict = {"pairs": {}, "pooled": {}}
    for b in budgets:
        diffs = []
        for name in sorted(option):
            g1 = [option[name][s][b] for s in seeds]
            g0 = [defaults[name][s][b] for s in seeds]
            diffs += [x - y for x, y in zip(g1, g0)]
            out["pairs"].setdefault(name, {})[b] = {"gap_median_option": float(np.median(g1)),
                                                    "gap_median_defaults": float(np.median(g0))}
        d = np.asarray(diffs)
        ci = bootstrap_ci(d, n_resamples=4000)
        out["pooled"][b] = {"mean_diff": ci.estimate, "ci95": [ci.low, ci.high], "runs": len(d),
                            "runs_better": int((d < 0).sum()), "better": ci.high < 0, "worse": ci.low > 0}
    return out


def _seeds(text: str) -> list[int]:
    try:
        a, b = (int(x) for x in text.split("-"))
    except ValueError:
        raise SystemExit(f"levers: --seeds must be A-B (e.g. 0-19), got {text!r}") from None
    return list(range(a, b + 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="the lever's name in levers.json")
    ap.add_argument("options", help="sampler options as JSON, added to ehvi+lat's (e.g. '{\"acq_scale\": \"value\"}')")
    ap.add_argument("--seeds", default="0-19", help="A-B (default 0-19)")
    ap.add_argument("--budget", type=int, default=100, help="distinct evaluations per run (default 100)")
    ap.add_argument("--rerun-defaults", action="store_true", help="run the defaults here instead of the stored gaps")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 pairs, 2 seeds, 50 evaluations, both arms")
    ap.add_argument("--table", default=None, help="path of nb201_dev.csv (default: ../shared/data)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as e:
        raise SystemExit(f"levers: options must be a JSON object: {e}") from None
    if not isinstance(options, dict):
        raise SystemExit(f"levers: options must be a JSON object, got {args.options!r}")
    seeds, pairs, budget = _seeds(args.seeds), list(range(N_PAIRS)), args.budget
    path = find_table(args.table)
    if path is None:
        raise SystemExit("levers: no NAS-Bench-201 table (give --table or put it at ../shared/data/nb201/nb201_dev.csv)")
    rerun = args.rerun_defaults or budget > 100
    if args.quick:
        seeds, pairs, budget, rerun = [0, 1], [0, 4], 50, True
    t0 = time.perf_counter()
    if rerun:
        print("defaults", file=sys.stderr, flush=True)
        defaults = run_arm(str(path), {}, seeds, pairs, budget, args.procs)
    else:
        defaults = stored_defaults()
        missing = [s for s in seeds if s not in next(iter(defaults.values()))]
        if missing:
            raise SystemExit(f"levers: seeds {missing} have no stored defaults; use --rerun-defaults")
        print(f"defaults: checking the stored gaps on seed {seeds[0]}", file=sys.stderr, flush=True)
        bad = mismatches(defaults, run_arm(str(path), {}, seeds[:1], pairs, budget, args.procs))
        if bad:
            raise SystemExit(f"levers: the stored defaults no longer match the code ({bad[0]}; {len(bad)} in all); "
                             "rerun bench/zero_cost.py or use --rerun-defaults")
    print(f"{args.name}: {options}", file=sys.stderr, flush=True)
    option = run_arm(str(path), options, seeds, pairs, budget, args.procs)
    entry = {"options": options, "sampler": "ehvi+lat", "seeds": seeds, "budget": budget,
             "defaults": "rerun" if rerun else "stored (bench/results/zero_cost.json, checked on the first seed)",
             "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
             "wall_s": time.perf_counter() - t0, **paired(option, defaults, seeds),
             "gaps": {name: {str(s): {"option": option[name][s], "defaults": defaults[name][s]} for s in seeds}
                      for name in sorted(option)}}
    for b, p in entry["pooled"].items():
        print(f"  at {b}: {args.name} - defaults {p['mean_diff']:+.4f} [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}], "
              f"{p['runs_better']} of {p['runs']} runs better", file=sys.stderr, flush=True)
    from archlab.core.io import atomic_write_json

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(out.parent, os.O_RDONLY)
    try:  # two runs finishing together both keep their entry
        fcntl.flock(folder, fcntl.LOCK_EX)
        doc = json.loads(out.read_text()) if out.exists() else {}
        doc[args.name] = entry
        atomic_write_json(out, doc)
    finally:
        os.close(folder)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
