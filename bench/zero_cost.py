"""Zero-cost proxy benchmark on NAS-Bench-201: how well SynFlow ranks the cells, and what it adds to the search.

1. ``proxy``: the log SynFlow score (``archlab.supernets.ranking.zero_cost.SynflowScorer``) of all
   15,625 cells of ``../shared/data/nb201/nb201_dev.csv`` on the untrained ``CellNet`` at
   NAS-Bench-201's size (16 channels, 5 cells per stage, 3 stages, 32x32 RGB input, 100
   classes; torch seed 0), scored in ``--procs`` processes. Against each accuracy column of the
   table: Spearman and Kendall tau with 95 % bootstrap intervals, beside the trivial baseline in
   the same run, the parameter count of the cell's plain subnet (``CellNet.extract``), and the
   paired difference of the two taus (units resampled jointly). Seconds per cell.
2. ``search``: the default sampler of ``bench/search.py`` (``ehvi+lat``: latency from a LUT
   predictor fitted on 150 profiled cells) with and without the score as a hint of its
   accuracy model (``sampler_options={"hints": [...]}``, the weight ``hint_weight``; the
   scores of part 1 looked up, so the times are the sampler's alone), on the eight
   (accuracy, device) pairs over ``--seeds``: the gap ``1 - HV/HV_exact`` after 50 and 100
   distinct evaluations, per pair the medians and pooled over pairs the mean of per-run paired
   differences (hint minus none) with its 95 % bootstrap interval and the runs the hint made
   better. How many distinct cells the hint was asked for per search, which with part 1's
   seconds per cell is what the proxy costs a user who computes it live.

``--quick``: a smoke run (200 cells, 2 pairs x 2 seeds at 50). ``--scores``: reuse part 1's
stored scores (``bench/results/zero_cost.json``) instead of recomputing them. Writes
``bench/results/zero_cost.json`` (atomically).
"""

from __future__ import annotations

import argparse
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
from nb201 import Table, bench_search, find_table, load_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "zero_cost.json"
#: CellNet at NAS-Bench-201's size (its macro skeleton: stem, 3 stages of 5 cells, ResNet reductions)
NB201_NET = {"num_classes": 100, "in_channels": 3, "image_size": 32, "channels": 16, "stages": 3, "cells_per_stage": 5}
BUDGETS = (50, 100)
HINT_WEIGHT = 2.0



def _net(table: Table, seed: int = 0):
    import torch

    from archlab.supernets.families.cell import CellNet

    torch.manual_seed(seed)
    return CellNet(table.space, **NB201_NET)  # type: ignore[arg-type]


def _score_part(args: tuple[str, list[int]]) -> tuple[list[float], list[int], float]:
    """Log synflow and parameter count of the table's cells ``rows`` (one process)."""
    import torch

    from archlab.spaces import Arch
    from archlab.supernets.ranking.zero_cost import SynflowScorer

    torch.set_num_threads(1)
    path, rows = args
    table = load_table(path)
    net = _net(table)
    scorer = SynflowScorer(net)
    archs = [Arch.from_json(table.keys[r]) for r in rows]
    scorer(archs[:1])  # the prepared copy is made once: not counted per cell
    t0 = time.perf_counter()
    scores = scorer(archs)
    seconds = (time.perf_counter() - t0) / max(len(archs) - 1, 1)
    count = param_counter(net)
    params = [count(a) for a in archs]
    return [float(s) for s in scores], params, seconds


def param_counter(net):
    """``count(arch)``: parameters of ``arch``'s plain subnet of ``net``, as the all-``none``
    cell's plus, per edge, what its op adds (each edge's modules are its own, so the count is
    additive; checked in ``proxy``): 31 extractions instead of one per cell."""
    cache: dict = {}

    def extracted(ops: list[str]) -> int:
        arch = net.space.validate({"edges": [{"op": o} for o in ops]})
        return int(sum(p.numel() for p in net.extract(arch).parameters()))

    def count(arch) -> int:
        ops = [str(e["op"]) for e in arch["edges"]]
        if "base" not in cache:
            cache["base"] = extracted(["none"] * len(ops))
        total = cache["base"]
        for e, op in enumerate(ops):
            if (e, op) not in cache:
                cache[(e, op)] = extracted(["none"] * e + [op] + ["none"] * (len(ops) - e - 1)) - cache["base"]
            total += cache[(e, op)]
        return int(total)

    return count


def proxy(table: Table, path: str, rows: list[int], procs: int) -> dict:
    """Part 1 (see the module docstring)."""
    from archlab.core.stats import kendall_tau, paired_difference, spearman
    from archlab.spaces import Arch

    chunks = [rows[i::procs] for i in range(procs)]
    t0 = time.perf_counter()
    with get_context("spawn").Pool(procs) as pool:
        parts = pool.map(_score_part, [(path, c) for c in chunks])
    wall = time.perf_counter() - t0
    scores, params = np.zeros(len(table.keys)), np.zeros(len(table.keys))
    for c, (s, p, _) in zip(chunks, parts):
        scores[c], params[c] = s, p
    net = _net(table)
    check = [rows[i] for i in np.random.default_rng(0).choice(len(rows), min(20, len(rows)), replace=False)]
    for r in check:  # the additive count is the plain subnet's
        a = Arch.from_json(table.keys[r])
        assert params[r] == sum(p.numel() for p in net.extract(a).parameters()), table.keys[r]
    out: dict = {"cells": len(rows), "net": NB201_NET, "seconds_per_cell": float(np.median([p[2] for p in parts])),
                 "wall_s": wall, "procs": procs, "distinct_param_counts": len(set(params[rows].tolist())),
                 "columns": {}}
    for col in ("cifar100_acc", "imagenet16_acc"):
        acc = table.columns[col][rows]
        row: dict = {}
        for name, x in (("synflow", scores[rows]), ("params", params[rows])):
            row[name] = {"spearman": spearman(acc, x, n_resamples=500).to_dict(),
                         "kendall": kendall_tau(acc, x, n_resamples=500).to_dict()}
        row["kendall_synflow_minus_params"] = paired_difference(scores[rows], params[rows], reference=acc,
                                                                 n_resamples=500).to_dict()
        out["columns"][col] = row
        print(f"  {col}: synflow spearman {row['synflow']['spearman']['estimate']:.3f}, params "
              f"{row['params']['spearman']['estimate']:.3f}", file=sys.stderr, flush=True)
    return out, scores


def _search_job(args: tuple) -> tuple[str, int, str, dict, int]:
    path, pi, seed, arm, scores, budget = args
    B = bench_search()
    table = load_table(path)
    prob = B.problems(table, False, [pi])[0]
    asked: set[str] = set()
    extra: dict = {}
    if arm == "synflow":
        col = np.asarray(scores, dtype=float)

        def hint(archs):
            asked.update(a.key for a in archs)
            return col[[table.index[a.key] for a in archs]]

        extra = {"hints": [hint], "hint_weight": HINT_WEIGHT}
    curve, wall, _ = B.run_curve(prob, B.MAIN, seed, budget, extra)
    return prob.name, seed, arm, {str(b): curve.gap_at(b) for b in BUDGETS if b <= budget} | {"wall_s": wall}, len(asked)


def search(table: Table, path: str, scores: np.ndarray, seeds: list[int], pairs: list[int], budget: int,
           procs: int) -> dict:
    """Part 2 (see the module docstring)."""
    from archlab.core.stats import bootstrap_ci

    jobs = [(path, pi, s, arm, scores.tolist(), budget) for pi in pairs for s in seeds for arm in ("none", "synflow")]
    t0 = time.perf_counter()
    with get_context("spawn").Pool(procs) as pool:
        got = pool.map(_search_job, jobs, chunksize=1)
    res: dict = {}
    asked = []
    for name, seed, arm, gaps, n_asked in got:
        res.setdefault(name, {}).setdefault(arm, {})[seed] = gaps
        if arm == "synflow":
            asked.append(n_asked)
    out: dict = {"sampler": "ehvi+lat", "hint_weight": HINT_WEIGHT, "seeds": seeds, "budget": budget,
                 "wall_s": time.perf_counter() - t0, "pairs": {}, "pooled": {},
                 "hinted_cells_per_search": {"median": float(np.median(asked)), "max": int(max(asked))}}
    for b in (str(x) for x in BUDGETS if x <= budget):
        diffs = []
        for name, arms in res.items():
            g0 = [arms["none"][s][b] for s in seeds]
            g1 = [arms["synflow"][s][b] for s in seeds]
            d = [x - y for x, y in zip(g1, g0)]
            diffs += d
            out["pairs"].setdefault(name, {})[b] = {"gap_median_none": float(np.median(g0)),
                                                    "gap_median_synflow": float(np.median(g1)),
                                                    "mean_diff": float(np.mean(d)),
                                                    "gaps": {"none": g0, "synflow": g1}}  # per seed, in seeds' order
        ci = bootstrap_ci(np.asarray(diffs), n_resamples=4000)
        out["pooled"][b] = {"mean_diff": ci.estimate, "ci95": [ci.low, ci.high], "runs": len(diffs),
                            "runs_better": int(sum(x < 0 for x in diffs)), "hint_better": ci.high < 0,
                            "hint_worse": ci.low > 0}
        print(f"  at {b}: synflow - none {ci.estimate:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}], "
              f"{out['pooled'][b]['runs_better']} of {len(diffs)} runs better", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (200 cells, 2 pairs x 2 seeds at 50)")
    ap.add_argument("--seeds", default="0-19", help="search seeds, a-b (default 0-19)")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--scores", action="store_true", help="reuse the stored scores of part 1")
    ap.add_argument("--table", default=None, help="path of nb201_dev.csv (default: ../shared/data)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    path = find_table(args.table)
    if path is None:
        sys.exit("zero_cost: no NAS-Bench-201 table (give --table or put it at ../shared/data/nb201/nb201_dev.csv)")
    table = load_table(path)
    n = len(table.keys)
    rows = sorted(np.random.default_rng(0).choice(n, 200, replace=False).tolist()) if args.quick else list(range(n))
    result: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "quick": args.quick}
    if args.scores:
        old = json.loads(Path(args.out).read_text())
        result["proxy"], scores = old["proxy"], np.asarray(old["scores"], dtype=float)
    else:
        print("proxy: scoring cells", file=sys.stderr, flush=True)
        result["proxy"], scores = proxy(table, str(path), rows, args.procs)
    a, b = (int(x) for x in args.seeds.split("-"))
    seeds, pairs, budget = (list(range(2)), [0, 4], 50) if args.quick else (list(range(a, b + 1)), list(range(8)), 100)
    hint = scores
    if args.quick:  # a smoke run scores 200 cells: the parameter count (every cell, additive) is its hint
        net = _net(table)
        from archlab.spaces import Arch

        count = param_counter(net)
        hint = np.log(np.array([count(Arch.from_json(k)) for k in table.keys], dtype=float))
    print("search: ehvi+lat with and without the hint", file=sys.stderr, flush=True)
    result["search"] = search(table, str(path), hint, seeds, pairs, budget, args.procs)
    result["scores"] = [round(float(s), 6) for s in scores]
    from archlab.core.io import atomic_write_json

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
