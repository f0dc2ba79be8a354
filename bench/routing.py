"""Token routing benchmark: every built-in router and a dense FFN at matched active compute.

The character-level transformer LM on tinyshakespeare (``--data``), one model per router
family: ``--layers`` MoE layers of ``--experts`` experts of width ``--ffn`` each, routed
with about one expert per token (``topk``/``recurrent``: k = 1 with capacity factor 1.25
(``topk``) or none; ``expert_choice``: capacity factor 1.0; ``null_experts``: k = 2 of
E real + E null experts, so 2 * E / 2E = 1 real expert per token in balance; ``top_p``:
p = ``--top-p``; ``stochastic`` (THOR): one random expert, trained with two passes and the
consistency loss; ``random_grow`` (SMoE-Dropout): k grows from 1 to E in training, k = 1 in
evaluation), and a dense FFN of width ``--ffn`` (the active width of one expert). Each model
is trained ``--steps`` steps (AdamW, aux coefficient 0.01) for each of ``--seeds`` seeds and
scored on ``--eval-batches`` fixed validation batches.

Reported per router: validation loss (mean over seeds with a 95% t interval, and the paired
difference to the dense FFN with its 95% interval: "beats" only when it excludes 0),
training tokens/s, load CV, experts per token, dropped-token fraction, router entropy and
active parameters / MACs per token (measured on a validation batch).

Speed: forward + backward of one MoE layer at k = 1 (``topk``, no capacity) against a dense
FFN of the same active width, over several (tokens, d_model, ffn, experts) shapes; per shape
the ratio of median times; goal: median over shapes <= 1.3. The router's own share (gate +
routing rule, forward + backward) is reported too.

Writes ``bench/results/routing.json`` (atomically).

    python bench/routing.py --quick          # under two minutes
    python bench/routing.py                  # the size recorded in the JSON
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from archlab.core.io import atomic_write_json
from archlab.spaces import SearchSpace
from archlab.spaces.library import moe_transformer_lm_space, transformer_lm_space
from archlab.supernets import TransformerLM, pick_device
from archlab.supernets.base import extreme_arch
from archlab.supernets.layers.moe import PlainMoEFFN
from archlab.supernets.layers.routing_metrics import active_costs, flat_metrics, measure_routing
from archlab.supernets.routers import ROUTERS, RouteSettings, RoutingState, set_progress, thor_loss
from archlab.supernets.tasks.text import CharLMTask

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "routing.json"
DATA = next((p for p in (base / "shared" / "data" / "text" / "tinyshakespeare.txt" for base in (ROOT.parent, ROOT.parent.parent))
             if p.is_file()), ROOT.parent / "shared" / "data" / "text" / "tinyshakespeare.txt")
AUX_COEF = 0.01
SPEED_GOAL = 1.3


def router_space(name: str, args: argparse.Namespace) -> SearchSpace:
    """A one-architecture space for ``name`` (``dense``: plain FFNs of width ``--ffn``)."""
    common = {"n_layer": (args.layers, args.layers), "d_model": (args.d_model,), "n_head": (4,), "ffn": (args.ffn,)}
    if name == "dense":
        return transformer_lm_space(name, **common)
    e = args.experts
    extra: dict[str, Any] = {"topk": {"moe_capacity": (1.25,)}, "expert_choice": {"moe_capacity": (1.0,)},
                             "null_experts": {"moe_top_k": (2,), "moe_null": (e,)},
                             "top_p": {"moe_top_p": (args.top_p,)}}.get(name, {})
    return moe_transformer_lm_space(name, **common, **{"moe_experts": (e,), "moe_top_k": (1,), "moe_router": (name,), **extra})


def build(name: str, args: argparse.Namespace, vocab: int) -> nn.Module:
    """The plain model of router ``name``, initialised as archlab's supernet initialises."""
    space = router_space(name, args)
    net = TransformerLM(space, vocab_size=vocab, context=args.context, router_options={"topk": {"z_loss": 0.1}})
    return net.extract(extreme_arch(space))


def train_one(name: str, seed: int, args: argparse.Namespace, task: CharLMTask, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = build(name, args, task.vocab_size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y = task.batch("train", args.batch, g)
        x, y = x.to(device), y.to(device)
        set_progress(model, step / args.steps)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 20)

        def lm_loss(out: torch.Tensor, y: torch.Tensor = y) -> torch.Tensor:
            return F.cross_entropy(out.flatten(0, 1), y.flatten())

        if name == "stochastic":
            loss, _, _ = thor_loss(model, x, lm_loss)
        else:
            loss = lm_loss(model(x)) + AUX_COEF * model.aux_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    model.eval()
    batches = task.eval_batches("val", args.eval_batches)
    with torch.no_grad():
        losses = [float(F.cross_entropy(model(x.to(device)).flatten(0, 1), y.to(device).flatten())) for x, y in batches]
    routing = flat_metrics(measure_routing(model, [batches[0][0].to(device)]))
    costs = active_costs(model, batches[0][0].to(device))
    return {"seed": seed, "val_loss": float(np.mean(losses)), "tokens_per_s": args.steps * args.batch * args.context / seconds,
            "train_seconds": seconds, **{k: v for k, v in routing.items() if ".layers." not in k}, **costs}


def interval(values: list[float]) -> dict[str, float]:
    """Mean and 95% t interval over seeds (the mean alone with one seed)."""
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return {"mean": float(a.mean()), "low": None, "high": None}
    lo, hi = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    return {"mean": float(a.mean()), "low": float(lo), "high": float(hi)}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    dense = {r["seed"]: r["val_loss"] for r in runs["dense"]}
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        entry: dict[str, Any] = {"val_loss": interval([r["val_loss"] for r in rs])}
        diffs = [r["val_loss"] - dense[r["seed"]] for r in rs if r["seed"] in dense]
        if name != "dense" and diffs:
            d = interval(diffs)
            d["beats_dense"] = d["high"] is not None and bool(d["high"] < 0)
            d["loses_to_dense"] = d["low"] is not None and bool(d["low"] > 0)
            entry["minus_dense"] = d
        for key in ("tokens_per_s", "routing.load_cv", "routing.experts_per_token", "routing.dropped", "routing.entropy",
                    "routing.null_share", "active_params", "params", "macs_per_token"):
            vals = [r[key] for r in rs if r.get(key) is not None]
            if vals:
                entry[key.removeprefix("routing.")] = float(statistics.median(vals))
        out[name] = entry
    return out


# speed ---------------------------------------------------------------------------------------
def _time(fn: Any, repeats: int, device: torch.device) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def speed(shapes: list[tuple[int, int, int, int]], repeats: int, device: torch.device) -> dict[str, Any]:
    rows = []
    for n, d, f, e in shapes:
        torch.manual_seed(0)
        moe = PlainMoEFFN(d, f, e, 1).to(device)
        dense = nn.Sequential(nn.Linear(d, f), nn.GELU(), nn.Linear(f, d)).to(device)
        x = torch.randn(n, d, device=device, requires_grad=True)

        def step(m: nn.Module, x: torch.Tensor = x) -> Any:
            def run() -> None:
                m.zero_grad(set_to_none=True)
                x.grad = None
                m(x).square().mean().backward()
            return run

        def router_only(moe: PlainMoEFFN = moe, x: torch.Tensor = x, e: int = e) -> None:
            moe.zero_grad(set_to_none=True)
            x.grad = None
            dsp = moe.rule.route(x, moe.router, RouteSettings(e, 1), RoutingState())
            (dsp.weights.sum() + dsp.aux["load_balance"]).backward()

        t_moe, t_dense = [], []
        for _ in range(3):  # interleave so drift in machine load hits both
            t_moe.append(_time(step(moe), repeats, device))
            t_dense.append(_time(step(dense), repeats, device))
        t_router = _time(router_only, repeats, device)
        m, dn = statistics.median(t_moe), statistics.median(t_dense)
        rows.append({"tokens": n, "d_model": d, "ffn": f, "experts": e, "moe_ms": 1e3 * m, "dense_ms": 1e3 * dn,
                     "ratio": m / dn, "router_ms": 1e3 * t_router, "router_share": t_router / m})
    med = statistics.median(r["ratio"] for r in rows)
    return {"shapes": rows, "median_ratio": med, "goal": SPEED_GOAL, "met": med <= SPEED_GOAL,
            "median_router_share": statistics.median(r["router_share"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny budgets, one seed (under two minutes)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--ffn", type=int, default=128)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--top-p", type=float, default=0.4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--routers", default=",".join(["dense", *sorted(ROUTERS)]))
    ap.add_argument("--speed-repeats", type=int, default=10)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: CUDA where present)")
    ap.add_argument("--speed-only", action="store_true",
                    help="re-measure only the speed part into --out's existing JSON (earlier speed runs are kept "
                         "under 'speed_runs'); for a quiet machine when the full run's timing shared the CPU")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.eval_batches, args.speed_repeats = 1, 20, 3, 3
    if not args.data.is_file():
        print(f"archlab: error: --data {args.data} is not a file", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else pick_device()
    task = CharLMTask(args.data, context=args.context)
    shapes = [(2048, 128, 512, 4), (4096, 256, 1024, 8)] if args.quick else \
        [(2048, 128, 512, 4), (4096, 128, 512, 8), (4096, 256, 1024, 4), (4096, 256, 1024, 8), (8192, 256, 1024, 8)]
    if args.speed_only:
        return _speed_only(args, shapes, device)
    names = [n for n in args.routers.split(",") if n]
    t0 = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for seed in range(args.seeds):
        for name in names:
            runs[name].append(train_one(name, seed, args, task, device))
            print(f"{name} seed {seed}: val loss {runs[name][-1]['val_loss']:.4f} "
                  f"({runs[name][-1]['train_seconds']:.0f} s)", flush=True)
    sp = speed(shapes, args.speed_repeats, device)
    doc = {
        "benchmark": "routing", "quick": bool(args.quick), "device": str(device), "threads": args.threads,
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "data": args.data.name,
        "size": {k: getattr(args, k) for k in ("seeds", "steps", "batch", "context", "layers", "d_model", "ffn", "experts",
                                               "top_p", "lr", "eval_batches")},
        "routers": summarise(runs), "runs": runs, "speed": sp, "seconds": time.perf_counter() - t0,
        "note": "Full size in the issue: about an hour on 2 cores; this run's size is in 'size'. "
                "Measured on a machine shared with other jobs.",
    }
    atomic_write_json(args.out, doc)
    print(f"wrote {args.out} ({doc['seconds']:.0f} s); speed median ratio {sp['median_ratio']:.2f}")
    return 0


def _speed_only(args: argparse.Namespace, shapes: list[tuple[int, int, int, int]], device: torch.device) -> int:
    """Re-measure the speed part into the existing JSON; every earlier speed run stays listed."""
    import json

    if not args.out.is_file():
        print(f"archlab: error: --out {args.out} has no full run to add a speed measurement to", file=sys.stderr)
        return 2
    doc = json.loads(args.out.read_text())
    runs = doc.get("speed_runs") or [{**doc["speed"], "when": "with the full run"}]
    sp = speed(shapes, args.speed_repeats, device)
    runs.append({**sp, "when": "--speed-only"})
    doc["speed"], doc["speed_runs"] = sp, runs
    atomic_write_json(args.out, doc)
    earlier = ", ".join(f"{r['median_ratio']:.3f}" for r in runs[:-1])
    print(f"speed median ratio {sp['median_ratio']:.3f} (earlier: {earlier})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
