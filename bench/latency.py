"""Latency predictors: on-machine profiling of the char-level transformer and the HAT datasets.

(a) ``onmachine``: profile N architectures of ``TransformerLM`` (vocab 65, context 128) at
    batch 1 on one thread, train every model on 3/4 of them and test on the rest; report the
    noise floor (anchor re-timings) and each model's MAPE, Kendall tau and share within 10%.
    Goal: best MAPE <= 1.5 x noise floor and >= 95% of test archs within +-10%.
(b) ``hat``: each HAT dataset (80/10/10 split, seed 0, 200 test rows, total = encoder +
    decoder latency): each model's MAPE and Kendall tau beside the reference 3x400 MLP.
(c) ``accuracy``: the AccuracyPredictor's Kendall tau on DyNAS-T's OFA MobileNetV3 logs.

Writes ``bench/results/latency.json`` (a part run alone keeps the other part's last result).
``--quick``: (a) with 60 archs and fewer repeats, (b) with short MLP training; < 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "latency.json"
HAT_DIR = ROOT.parent / "shared" / "data" / "hat_latency"
HAT_REFERENCE = {  # 3x400 MLP, ../shared/data/README.md
    "cpu_raspberrypi": {"mape": 4.9, "kendall_tau": 0.84},
    "cpu_xeon": {"mape": 5.1, "kendall_tau": 0.89},
    "gpu_titanxp": {"mape": 5.9, "kendall_tau": 0.81},
}
MODELS = ("ridge", "gbm", "mlp", "lut", "ensemble")


def _options(model: str, quick: bool) -> dict:
    if not quick:
        return {}
    mlp = {"epochs": 25}
    return {"mlp": mlp, "ensemble": {"member_options": {"mlp": mlp}}}.get(model, {})


def _fit_models(X_tr, y_tr, X_te, y_te, space, quick: bool, layer_ms=None) -> dict:
    """Every model; with per-layer timings ``lut`` is built from them and ``lut_e2e`` is the
    table fitted to end-to-end latencies instead."""
    from archlab.predictors import LatencyPredictor

    out = {}
    for label in MODELS + (("lut_e2e",) if layer_ms is not None else ()):
        model = "lut" if label == "lut_e2e" else label
        t0 = time.perf_counter()
        p = LatencyPredictor(space, model=model, model_options=_options(model, quick))
        p.fit(X_tr, y_tr, layer_ms=None if label == "lut_e2e" else layer_ms)
        fit_s = time.perf_counter() - t0
        s = p.score(X_te, y_te)
        out[label] = {"mape": round(s["mape"], 3), "kendall_tau": round(s["kendall_tau"], 4),
                      "within_10": round(s["within_10"], 4), "within_5": round(s["within_5"], 4),
                      "rmse_ms": round(s["rmse"], 5), "fit_s": round(fit_s, 2)}
        print(f"  {label:9s} MAPE {s['mape']:6.2f}%  tau {s['kendall_tau']:.3f}  "
              f"within10 {100 * s['within_10']:5.1f}%  fit {fit_s:5.1f}s", file=sys.stderr, flush=True)
    return out


def bench_hat(quick: bool) -> dict:
    from archlab.predictors import load_measurements

    res: dict = {"split": "80/10/10 random, seed 0, test = last 10%", "target": "encoder + decoder latency",
                 "reference_mlp_3x400": HAT_REFERENCE, "datasets": {}}
    for name in HAT_REFERENCE:
        path = HAT_DIR / f"wmt14ende_{name}_all.csv"
        if not path.is_file():
            res["datasets"][name] = {"skipped": f"{path} not found"}
            continue
        print(f"HAT {name}", file=sys.stderr)
        m = load_measurements(path, target="latency_mean_encoder+latency_mean_decoder")
        n = len(m)
        perm = np.random.default_rng(0).permutation(n)
        tr, te = perm[: int(0.8 * n)], perm[int(0.9 * n):]
        models = _fit_models(m.X.iloc[tr], m.y[tr], m.X.iloc[te], m.y[te], None, quick)
        rel_std = (m.frame["latency_std_encoder"] + m.frame["latency_std_decoder"]) / m.y
        best = min(models, key=lambda k: models[k]["mape"])
        res["datasets"][name] = {
            "n_train": len(tr), "n_test": len(te), "models": models, "best": best,
            "best_vs_reference_mape": round(models[best]["mape"] - HAT_REFERENCE[name]["mape"], 3),
            "median_relative_std_pct": round(100 * float(np.median(rel_std)), 3),
        }
    return res


DYNAST_DIR = ROOT.parent / "shared" / "data" / "dynast"


def bench_accuracy(quick: bool) -> dict:
    """AccuracyPredictor on DyNAS-T's OFA MobileNetV3 logs (ImageNet top-1 of ~2,200 unique
    subnets): Kendall tau on a seeded 20% test split."""
    import ast

    import pandas as pd

    from archlab.predictors import AccuracyPredictor
    from archlab.spaces.library import ofa_mobilenet_v3_space

    files = sorted(DYNAST_DIR.glob("mbnv3w10_*.csv"))
    if not files:
        return {"skipped": f"{DYNAST_DIR} not found"}
    space = ofa_mobilenet_v3_space()
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    archs, ys, seen = [], [], set()
    for text, acc in zip(frame["Sub-network"], frame["Top-1 Acc (%)"]):
        c = ast.literal_eval(text)  # a Python-literal dict: literal_eval, never eval
        arch = space.validate({"stages": [
            {"depth": c["d"][s], "blocks": [{"kernel": c["ks"][4 * s + b], "expand": c["e"][4 * s + b]}
                                            for b in range(c["d"][s])]} for s in range(5)]})
        if arch.key not in seen:
            seen.add(arch.key)
            archs.append(arch)
            ys.append(float(acc))
    y = np.asarray(ys)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[: int(0.8 * len(y))], perm[int(0.8 * len(y)):]
    out = {}
    print("DyNAS-T accuracy", file=sys.stderr)
    for model in ("ridge", "gbm", "mlp", "ensemble"):
        t0 = time.perf_counter()
        p = AccuracyPredictor(space, model=model, model_options=_options(model, quick))
        p.fit([archs[i] for i in tr], y[tr])
        s = p.score([archs[i] for i in te], y[te])
        out[model] = {"kendall_tau": round(s["kendall_tau"], 4), "spearman": round(s["spearman"], 4),
                      "rmse_top1_pct": round(s["rmse"], 4), "fit_s": round(time.perf_counter() - t0, 2)}
        print(f"  {model:9s} tau {s['kendall_tau']:.3f}  RMSE {s['rmse']:.3f} top-1 points", file=sys.stderr)
    return {"data": "DyNAS-T OFA MobileNetV3 w1.0 search logs (unique subnets)", "metric": "ImageNet top-1 (%)",
            "n_train": len(tr), "n_test": len(te), "models": out}


def bench_onmachine(quick: bool, run_dir: str | None) -> dict:
    import torch

    from archlab.predictors.profiling import noise_report, profile
    from archlab.supernets import TransformerLM

    n, n_train = (60, 45) if quick else (400, 300)
    settings = ({"warmup": 3, "repeats": 10, "anchors": 3, "anchor_every": 20} if quick
                else {"warmup": 10, "repeats": 30, "anchors": 3, "anchor_every": 25})
    torch.manual_seed(0)
    space = TransformerLM.default_space()
    net = TransformerLM(space, vocab_size=65, context=128)
    tmp = None
    if run_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="archlab-bench-latency-")
        run_dir = tmp.name
    t0 = time.perf_counter()
    frame = profile(net, run_dir, n=n, seed=0, target="cpu:threads=1,batch=1", **settings)
    profile_s = time.perf_counter() - t0
    noise = noise_report(frame)
    rows = frame[frame["kind"] == "arch"].reset_index(drop=True)
    archs = [space.validate(a) for a in rows["arch"]]
    y = rows["latency_ms"].to_numpy()
    perm = np.random.default_rng(0).permutation(len(archs))
    tr, te = perm[:n_train], perm[n_train:]
    print(f"on-machine: {len(archs)} archs profiled in {profile_s:.0f}s, noise floor "
          f"{noise['noise_floor_pct']:.2f}%", file=sys.stderr)
    layer_ms = [json.loads(t) if t else None for t in rows["layer_ms"]]
    models = _fit_models([archs[i] for i in tr], y[tr], [archs[i] for i in te], y[te], space, quick,
                         layer_ms=[layer_ms[i] for i in tr])
    best = min(models, key=lambda k: models[k]["mape"])
    floor = noise["noise_floor_pct"]
    if tmp is not None:
        tmp.cleanup()
    return {
        "family": "transformer_lm", "space": space.name, "vocab_size": 65, "context": 128,
        "target": "cpu:threads=1,batch=1", "n_archs": len(archs), "n_train": len(tr), "n_test": len(te),
        "settings": settings, "profile_s": round(profile_s, 1),
        "latency_ms": {"min": round(float(y.min()), 4), "median": round(float(np.median(y)), 4),
                       "max": round(float(y.max()), 4)},
        "noise": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in noise.items() if k != "anchors"},
        "models": models, "best": best,
        "goal": {"best_mape_over_noise_floor": round(models[best]["mape"] / floor, 3) if floor > 0 else None,
                 "target_ratio": 1.5, "best_within_10": models[best]["within_10"], "target_within_10": 0.95,
                 "met": bool(floor > 0 and models[best]["mape"] <= 1.5 * floor and models[best]["within_10"] >= 0.95)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run, under two minutes")
    ap.add_argument("--part", choices=("all", "onmachine", "hat", "accuracy"), default="all")
    ap.add_argument("--run-dir", default=None, help="keep the on-machine latency table here (resumable)")
    args = ap.parse_args(argv)
    from archlab.core.io import atomic_write_json

    old = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    out = {"benchmark": "latency", **{k: v for k, v in old.items() if k in ("onmachine", "hat", "accuracy")}}
    t0 = time.perf_counter()
    if args.part in ("all", "hat"):
        out["hat"] = {"quick": args.quick, **bench_hat(args.quick)}
    if args.part in ("all", "accuracy"):
        out["accuracy"] = {"quick": args.quick, **bench_accuracy(args.quick)}
    if args.part in ("all", "onmachine"):
        out["onmachine"] = {"quick": args.quick, **bench_onmachine(args.quick, args.run_dir)}
    out["last_run"] = {"part": args.part, "quick": args.quick, "seconds": round(time.perf_counter() - t0, 1),
                       "threads_note": "torch.set_num_threads is set per profiling run by the target"}
    atomic_write_json(RESULT, out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("hat", "accuracy")} | {"hat_best": {
        d: r.get("best") for d, r in out.get("hat", {}).get("datasets", {}).items()}}, indent=1)[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
