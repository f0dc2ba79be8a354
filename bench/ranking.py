"""Which supernet ranks architectures like standalone training? Measured on the committed
ground truth (``data/ranking_gt_mlp_mnist.csv``: 100 MLPs on MNIST, 3 standalone seeds each).

Methods (sharing mode + strategy): ``uniform``, ``sandwich``, ``pada``, ``progressive`` on the
entangled bank, ``mos-layer`` and ``mos-neuron`` with sandwich training; ``--seeds``
supernet seeds each. Every supernet gets the same training budget: ``--budget`` subnet
forward-backward passes (steps = budget / paths per step: uniform and PA&DA 1, sandwich 4,
progressive 0.2 x 1 + 0.8 x 3 = 2.6), the same optimiser settings as the standalone runs.
Each supernet scores the ground-truth architectures with inherited weights (validation
accuracy, all 2,000 images); ``archlab.supernets.ranking.stats`` gives tau and Spearman with
bootstrap 95 % intervals (architectures resampled; a method's tau is the mean over its
seeds), paired differences against sandwich and against the parameter count, the proxies
(parameters, MACs, mean width, and SynFlow on the untrained net the table's proxies were
counted on) and the seed-to-seed ceiling of the ground truth.

Supernets and their scores are cached under ``--work`` (default ``runs/bench_ranking``), so a
killed run resumes. Writes ``bench/results/ranking.json``.

    python bench/ranking.py --data /work/shared/data/mnist
    python bench/ranking.py --data /work/shared/data/mnist --quick    # tiny budget, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.core.io import atomic_write_json
from archlab.core.progress import progress
from archlab.core.provenance import code_version
from archlab.supernets.ranking.ground_truth import load_ground_truth, uniform_archs
from archlab.supernets.ranking.stats import check_settings, ranking_stats, training_record
from archlab.supernets.ranking.zero_cost import synflow
from archlab.supernets.training.evaluation import evaluate_many
from archlab.supernets.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "ranking.json"
GT = ROOT / "data" / "ranking_gt_mlp_mnist.csv"

# method -> (sharing, strategy, options, subnet passes per step)
METHODS: dict[str, tuple[str, str, dict[str, Any], float]] = {
    "uniform": ("entangled", "uniform", {}, 1.0),
    "sandwich": ("entangled", "sandwich", {"n_random": 2}, 4.0),
    "pada": ("entangled", "pada", {}, 1.0),
    "progressive": ("entangled", "progressive", {"order": ["n_layer"], "warmup": 0.2, "n_random": 2}, 2.6),
    "mos-layer": ("mos-layer", "sandwich", {"n_random": 2}, 4.0),
    "mos-neuron": ("mos-neuron", "sandwich", {"n_random": 2}, 4.0),
}


def supernet_scores(method: str, seed: int, budget: int, setup: Any, space: Any, task: Any, archs: list[Any],
                    work: Path) -> dict[str, Any]:
    """Train (or resume) one supernet and score ``archs``; cached as ``scores.json``."""
    sharing, strategy, options, paths = METHODS[method]
    out = work / method / f"seed{seed}"
    cache = out / "scores.json"
    steps = max(1, round(budget / paths))
    cfg = setup.config().replace(steps=steps, strategy=strategy, strategy_options=dict(options), seed=seed,
                                 checkpoint_every=max(1, steps // 4), log_every=0)
    record = training_record(setup.config().to_dict(), budget, code_version(), sharing=sharing,
                             strategy=strategy, strategy_options=options, steps=steps, seed=seed)
    if cache.is_file():
        body = json.loads(cache.read_text(encoding="utf-8"))
        if body.get("record", {}).get("steps") == steps and body.get("archs") == [a.key for a in archs]:
            return body
    torch.manual_seed(seed)
    net = setup.build(space, task, sharing)
    t0 = time.perf_counter()
    train(net, task, cfg, out)
    seconds = time.perf_counter() - t0
    results = evaluate_many(net, task, archs, max_batches=None)
    body = {"method": method, "seed": seed, "record": record, "train_seconds": seconds,
            "archs": [a.key for a in archs], "accuracy": [float(r["accuracy"]) for r in results],
            "loss": [float(r["loss"]) for r in results]}
    atomic_write_json(cache, body)
    return body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="MNIST folder (IDX files), e.g. /work/shared/data/mnist")
    ap.add_argument("--gt", default=str(GT), help="ground-truth CSV (with its .json sidecar)")
    ap.add_argument("--budget", type=int, default=4000, help="subnet forward-backward passes per supernet")
    ap.add_argument("--seeds", type=int, default=3, help="supernet seeds per method")
    ap.add_argument("--only-seed", type=int, default=None,
                    help="train and score only this supernet seed (run several processes side by side), no report")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_ranking"))
    ap.add_argument("--train-only", action="store_true", help="train and score, write no report (ground truth not needed)")
    ap.add_argument("--quick", action="store_true", help="budget 200, 2 seeds (a smoke run, not the benchmark)")
    ap.add_argument("--out", default=str(RESULT))
    a = ap.parse_args()
    budget, n_seeds = (200, 2) if a.quick else (a.budget, a.seeds)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"--methods: unknown {unknown[0]!r}; allowed: {', '.join(METHODS)}")
    from archlab.supernets.ranking.ground_truth import get_setup

    setup = get_setup("mlp_mnist")
    space, task = setup.space(), setup.task(a.data)
    archs = uniform_archs(space, setup.n_archs, setup.arch_seed)
    work = Path(a.work) / ("quick" if a.quick else "full")
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    runs: dict[str, list[dict[str, Any]]] = {}
    with progress(total=len(methods) * n_seeds, desc="supernets", unit="net") as bar:
        for seed in range(n_seeds) if a.only_seed is None else [a.only_seed]:  # seed-major
            for m in methods:
                runs.setdefault(m, []).append(supernet_scores(m, seed, budget, setup, space, task, archs, work))
                bar.update(1)
    if a.train_only or a.only_seed is not None:
        return
    gt = load_ground_truth(a.gt)
    if [x.key for x in gt.archs] != [x.key for x in archs]:
        raise SystemExit(f"{a.gt}: its architectures are not the setup's sample; rebuild it (scripts/ranking_gt.py)")
    records = {f"{m}/seed{r['seed']}": {**r["record"], "train": {k: v for k, v in r["record"]["train"].items()}}
               for m, rs in runs.items() for r in rs}
    mismatches = check_settings(records)
    proxies = {p: gt.proxies[p] for p in ("params", "macs", "width")}
    torch.manual_seed(0)  # the untrained net the ground truth's proxies were counted on
    fresh = setup.build(space, task)
    syn = np.array([synflow(fresh.extract(x), fresh.example_input(1)) for x in archs])
    if np.isfinite(syn).all():
        proxies["synflow"] = syn
    stats = ranking_stats(gt.mean, {m: [r["accuracy"] for r in rs] for m, rs in runs.items()},
                          proxies=proxies,
                          ceiling_scores=gt.scores, reference="sandwich" if "sandwich" in runs else None)
    best = max(stats["methods"], key=lambda m: stats["methods"][m]["kendall"]["estimate"])
    b = stats["methods"][best]
    params_tau = stats["proxies"]["params"]["kendall"]["estimate"]
    goal = {"best_method": best,
            "best_low_above_params_tau": b["kendall"]["low"] > params_tau,
            "best_fraction_of_ceiling": b.get("fraction_of_ceiling"),
            "best_mean_at_least_0.8_ceiling": (b.get("fraction_of_ceiling") or 0) >= 0.8}
    result = {
        "benchmark": "ranking", "quick": bool(a.quick), "ground_truth": Path(a.gt).name,
        "ground_truth_settings": {k: gt.sidecar[k] for k in ("setup", "n_archs", "seeds", "standalone_steps", "train",
                                                             "task", "metric")},
        "budget_subnet_passes": budget, "supernet_seeds": n_seeds,
        "methods": {m: {"sharing": METHODS[m][0], "strategy": METHODS[m][1], "options": METHODS[m][2],
                        "steps": runs[m][0]["record"]["steps"],
                        "train_seconds": [round(r["train_seconds"], 1) for r in runs[m]]} for m in runs},
        "stats": stats, "goal": goal, "settings_mismatches": mismatches, "code_version": code_version(),
        "device": str(task._x["train"].device), "threads": 1, "torch": torch.__version__,
        "seconds": round(time.perf_counter() - t_start, 1),
        "scores": {m: [r["accuracy"] for r in rs] for m, rs in runs.items()},
    }
    atomic_write_json(a.out, result)
    c = stats.get("ceiling", {})
    print(f"ceiling (seed-to-seed tau): {c.get('estimate', float('nan')):.3f} [{c.get('low', 0):.3f}, {c.get('high', 0):.3f}]")
    for group in ("methods", "proxies"):
        for name, e in stats[group].items():
            k = e["kendall"]
            line = f"{name:<12} tau {k['estimate']:.3f} [{k['low']:.3f}, {k['high']:.3f}]"
            d = e.get("minus_sandwich")
            if d:
                line += f"  vs sandwich {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
            print(line)
    print(f"wrote {a.out} ({np.round(result['seconds'])} s)")


if __name__ == "__main__":
    main()
