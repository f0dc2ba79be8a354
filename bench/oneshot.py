"""One-shot differentiable search vs. Optuna over a trained supernet, on the NB201 cell space.

Space: ``cell_space`` (6 edges x 5 ops, 15,625 cells); family ``cell`` (NB201 skeleton, 3 stages
of one cell) on scikit-learn's 8x8 digits; every run the same number of weight-update steps
(``--steps``, batch ``--batch``), wall-clock reported as measured.

- Optuna: the supernet trained single-path (uniform sampling, ``--steps``), then TPE over the
  subnets' inherited validation accuracy (BN recalibrated) for ``--trials`` evaluations; the
  best trial is its answer.
- darts, darts2, gdas, drnas, tanglenas: ``oneshot_search`` for ``--steps`` bilevel steps
  (architecture step on ``val``, weight step on ``train``); the answer is each slot's argmax.
  The methods' arch learning rates are their papers' x ``--arch-lr-scale`` (runs are ~100x
  shorter than the papers'); the same scale for all.

Each answer is trained from scratch (``--standalone-steps``, ``--seeds`` seeds, seed-paired
across methods) and scored on the validation split: median and a 95% t-interval of the mean;
each method's paired difference to Optuna (same seeds) with its 95% interval. The found cell is
also located in NAS-Bench-201 (``nb201_dev.csv``: CIFAR-100 / ImageNet16 test accuracy of all
15,625 cells): a percentile there says how good that cell is on *those* datasets, not on
digits. Memory: peak bytes (torch profiler) of forward + backward of 8 layers with one choice of
5 kernel sizes per layer, entangled mix vs. per-candidate (DARTS) mixed op, and of one
search step of the cell supernet per method.

    python bench/oneshot.py [--quick] [--nb201 /work/shared/data/nb201/nb201_dev.csv]
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from archlab.core.io import atomic_write_json
from archlab.search.oneshot import OneShotConfig, _Bilevel, oneshot_search
from archlab.supernets.families import CellNet
from archlab.supernets.families.plain import build_plain
from archlab.supernets.soft.memory import mixed_op_memory, peak_bytes
from archlab.supernets.soft.methods import METHODS
from archlab.supernets.tasks import DigitsTask
from archlab.supernets.training.evaluation import Evaluator

OUT = Path(__file__).resolve().parent / "results" / "oneshot.json"


def interval(values: list[float]) -> dict[str, Any]:
    """Median, mean and a 95% t-interval of the mean."""
    a = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
    return {"values": a.tolist(), "median": float(np.median(a)), "mean": float(a.mean()),
            "ci95": [float(a.mean() - half), float(a.mean() + half)]}


def standalone(arch: Any, dims: dict[str, Any], task: DigitsTask, steps: int, seed: int) -> float:
    """Validation accuracy of ``arch`` trained from scratch (Adam 3e-3, cosine, batch 64)."""
    torch.manual_seed(seed)
    net = build_plain("cell", dims, arch.to_dict())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        x, y = task.batch("train", 64, generator=g)
        loss = task.loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return float(task.evaluate(net)["accuracy"])


def nb201_string(arch: Any) -> str:
    ops = [e["op"] for e in arch["edges"]]
    return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"


def nb201_ranks(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    table = {}
    for col in ("cifar100_acc", "imagenet16_acc"):
        acc = np.asarray([float(r[col]) for r in rows])
        table[col] = {r["arch_string"]: (float(a), float((acc < a).mean())) for r, a in zip(rows, acc)}
    return table


def optuna_search(net: CellNet, task: DigitsTask, steps: int, batch: int, trials: int, seed: int) -> dict[str, Any]:
    import optuna

    start = time.perf_counter()
    # single-path uniform sampling, with the weight recipe of the one-shot runs (DARTS' SGD)
    cfg = OneShotConfig(steps=steps, batch_size=batch)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=cfg.lr_min)
    g, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    net.train()
    for _ in range(steps):
        net.set_arch(net.space.sample(rng))
        x, y = task.batch("train", batch, generator=g)
        loss = task.loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
    trained = time.perf_counter() - start
    ev = Evaluator(net, task, "val")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: ev(net.space.suggest(t))["accuracy"], n_trials=trials)
    best = net.space.from_params(study.best_trial.params)
    return {"arch": best, "wall_s": time.perf_counter() - start, "train_s": trained,
            "inherited_accuracy": float(study.best_value)}


def step_memory(method: str, dims: dict[str, Any], task: DigitsTask, batch: int) -> float:
    net = CellNet(channels=dims["channels"])
    loop = _Bilevel(net, task, OneShotConfig(method=method, steps=2, batch_size=batch), None)
    loop.arch_step(0.0)
    loop.weight_step(0.0)
    return float(peak_bytes(lambda: (loop.arch_step(0.5), loop.weight_step(0.5))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--standalone-steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--arch-lr-scale", type=float, default=10.0)
    ap.add_argument("--nb201", type=Path, default=Path("/work/shared/data/nb201/nb201_dev.csv"))
    ap.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run, minutes)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.trials, args.standalone_steps, args.seeds = 6, 4, 10, 2
    torch.set_num_threads(1)
    task = DigitsTask()
    dims = {**CellNet(channels=args.channels).dims}
    table = nb201_ranks(args.nb201)
    doc: dict[str, Any] = {"quick": args.quick, "device": "cpu", "threads": 1, "machine": platform.machine(),
                           "space": "cell_space (NB201: 6 edges x 5 ops)", "task": "sklearn digits 8x8",
                           "steps": args.steps, "batch": args.batch, "channels": args.channels,
                           "optuna_trials": args.trials, "standalone_steps": args.standalone_steps,
                           "seeds": args.seeds, "arch_lr_scale": args.arch_lr_scale, "methods": {}}
    t0 = time.perf_counter()
    doc["memory"] = mixed_op_memory(channels=16, kernels=(1, 3, 5, 7, 9), layers=8, batch=8, size=32)
    doc["memory"]["goal_met"] = doc["memory"]["entangled_over_per_candidate"] <= 1 / 3
    runs: dict[str, dict[str, Any]] = {}
    torch.manual_seed(0)
    runs["optuna-tpe"] = optuna_search(CellNet(channels=args.channels), task, args.steps, args.batch, args.trials, 0)
    for method in METHODS:
        cls = METHODS[method]
        torch.manual_seed(0)
        net = CellNet(channels=args.channels)
        res = oneshot_search(net, task, {"method": method, "steps": args.steps, "batch_size": args.batch,
                                         "history_every": max(1, args.steps // 10),
                                         "arch_options": {"arch_lr": cls.arch_lr * args.arch_lr_scale}})
        runs[method] = {"arch": res.arch, "wall_s": res.wall_s, "final_entropy": res.history[-1]["entropy"],
                        "step_peak_bytes": step_memory(method, dims, task, args.batch)}
    scores: dict[str, list[float]] = {}
    for run in runs.values():
        key = run["arch"].key
        if key not in scores:
            scores[key] = [standalone(run["arch"], dims, task, args.standalone_steps, s) for s in range(args.seeds)]
    base = scores[runs["optuna-tpe"]["arch"].key]
    for name, run in runs.items():
        accs = scores[run["arch"].key]
        entry = {k: v for k, v in run.items() if k != "arch"}
        entry.update(arch=nb201_string(run["arch"]), standalone_accuracy=interval(accs))
        if name != "optuna-tpe":
            diff = interval([a - b for a, b in zip(accs, base)])
            diff["beats_optuna"] = bool(diff["ci95"][0] > 0)
            diff["loses_to_optuna"] = bool(diff["ci95"][1] < 0)
            entry["paired_diff_vs_optuna"] = diff
        if table is not None:
            s = entry["arch"]
            entry["nb201"] = {col: {"accuracy": table[col][s][0], "percentile": table[col][s][1]} for col in table}
        doc["methods"][name] = entry
    doc["total_wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, doc)
    for name, e in doc["methods"].items():
        print(name, e["arch"], round(e["wall_s"], 1), round(e["standalone_accuracy"]["median"], 4))
    print("memory ratio", round(doc["memory"]["entangled_over_per_candidate"], 3), "total", round(doc["total_wall_s"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
