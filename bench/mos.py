"""Mixture of supernets vs. plain weight entanglement, on the character-level transformer.

(a) Step time: for the same random architectures, one training step (set_arch, forward,
    loss, backward, gradient clipping, AdamW step, zero_grad) of a ``mos-layer`` and a
    ``mos-neuron`` supernet divided by the same step of an ``entangled`` one; the three are
    measured alternately (order rotated every round) in one process, same batch. Per arch the
    ratio of median step times; the median and max over archs are reported. Goals: mos-layer
    <= 1.15, mos-neuron <= 1.30.
(b) Ranking: ``--archs`` architectures (largest, smallest and seeded samples), each trained
    alone for ``--steps`` (standalone), and one supernet per sharing mode trained with the same
    settings for ``--supernet-steps`` (sandwich rule); for each mode the mean absolute gap
    between inherited and standalone validation loss, Kendall tau-b, Spearman and top-k
    overlap (``archlab.supernets.ranking.run``). Work files (cache: a killed run resumes) go to
    ``--work`` (default ``runs/bench_mos``; a temporary folder with ``--quick``).

Writes ``bench/results/mos.json`` (atomically). The full run is sized for about an hour on 2
CPU cores; ``--quick`` takes under two minutes.

    python bench/mos.py /work/shared/data/text/tinyshakespeare.txt --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.core.io import atomic_write_json
from archlab.core.progress import progress
from archlab.supernets import TransformerLM
from archlab.supernets.ranking.run import run_ranking
from archlab.supernets.tasks import CharLMTask
from archlab.supernets.training.config import TrainConfig
from archlab.supernets.training.optim import clip_gradients, make_optimizer
from archlab.supernets.training.step import resolve_device

RESULT = Path(__file__).resolve().parent / "results" / "mos.json"
MODES = ("entangled", "mos-layer", "mos-neuron")
GOALS = {"mos-layer": 1.15, "mos-neuron": 1.30}

FULL = {"archs": 30, "standalone_seeds": 3, "steps": 600, "supernet_steps": 600, "batch_size": 32, "context": 64,
        "eval_batches": 16, "time_archs": 8, "time_rounds": 15}
QUICK = {"archs": 4, "standalone_seeds": 2, "steps": 10, "supernet_steps": 6, "batch_size": 8, "context": 32, "eval_batches": 2,
         "time_archs": 2, "time_rounds": 5}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_times(space: Any, task: CharLMTask, cfg: TrainConfig, n_archs: int, rounds: int, seed: int) -> dict[str, Any]:
    """Median step time (ms) per sharing mode per arch, measured alternately; ratios to entangled."""
    device = resolve_device(cfg.device)
    nets, opts = {}, {}
    for mode in MODES:
        torch.manual_seed(seed)
        nets[mode] = TransformerLM(space, **task.model_kwargs(), sharing=mode).to(device)
        opts[mode] = make_optimizer(nets[mode], cfg)
    g = torch.Generator().manual_seed(seed)
    x, y = task.batch("train", cfg.batch_size, g)
    x, y = x.to(device), y.to(device)
    archs = [space.largest(), *space.sample_many(n_archs - 1, seed=seed)]

    def step(mode: str, arch: Any) -> float:
        net, opt = nets[mode], opts[mode]
        _sync(device)
        t0 = time.perf_counter()
        net.set_arch(arch)
        loss = task.loss(net(x), y)
        loss.backward()
        clip_gradients(net.parameters(), cfg.grad_clip, opt)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        return (time.perf_counter() - t0) * 1e3

    per_arch = []
    bar = progress(total=len(archs), desc="step time", unit="arch")
    with bar:
        for arch in archs:
            for mode in MODES:  # warm-up
                for _ in range(2):
                    step(mode, arch)
            times: dict[str, list[float]] = {m: [] for m in MODES}
            for r in range(rounds):
                order = MODES[r % 3:] + MODES[: r % 3]
                for mode in order:
                    times[mode].append(step(mode, arch))
            med = {m: statistics.median(v) for m, v in times.items()}
            per_arch.append({"arch": arch.key, "ms": med,
                             "ratio": {m: med[m] / med["entangled"] for m in MODES if m != "entangled"}})
            bar.update(1)
    out: dict[str, Any] = {"archs": len(archs), "rounds": rounds, "per_arch": per_arch,
                           "entangled_ms_median": statistics.median(p["ms"]["entangled"] for p in per_arch)}
    for mode, goal in GOALS.items():
        ratios = [p["ratio"][mode] for p in per_arch]
        out[mode] = {"ratio_median": statistics.median(ratios), "ratio_max": max(ratios), "goal": goal,
                     "meets_goal": statistics.median(ratios) <= goal,
                     "ms_median": statistics.median(p["ms"][mode] for p in per_arch)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text", help="text corpus, e.g. /work/shared/data/text/tinyshakespeare.txt")
    ap.add_argument("--quick", action="store_true", help="small settings, under two minutes")
    ap.add_argument("--work", default=None, help="work folder (standalone cache, supernets)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=int, default=None, help=f"default {v} ({QUICK[k]} quick)")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = {k: (getattr(args, k) if getattr(args, k) is not None else (QUICK if args.quick else FULL)[k]) for k in FULL}
    t_start = time.perf_counter()
    task = CharLMTask(args.text, context=s["context"])
    space = TransformerLM.default_space()
    cfg = TrainConfig(steps=s["supernet_steps"], batch_size=s["batch_size"], lr=2e-3, weight_decay=0.01,
                      warmup_steps=max(1, s["supernet_steps"] // 20), strategy="sandwich", checkpoint_every=50,
                      log_every=0, eval_batches=s["eval_batches"], seed=args.seed, grad_clip=1.0)
    timing = step_times(space, task, cfg, s["time_archs"], s["time_rounds"], args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else (Path(tmp) if args.quick else Path("runs") / "bench_mos")
        report = run_ranking(
            work, space, task, cfg, lambda sharing: TransformerLM(space, **task.model_kwargs(), sharing=sharing),
            sharing=MODES, n_archs=s["archs"], steps=s["steps"], supernet_steps=s["supernet_steps"],
            seed=args.seed, eval_batches=s["eval_batches"], standalone_seeds=s["standalone_seeds"],
        )
    ranking = {m: {k: e[k] for k in ("mean_abs_gap", "kendall_tau", "spearman", "top_k_overlap", "top_k")}
               for m, e in report["supernets"].items()}
    result = {
        "benchmark": "mos",
        "quick": bool(args.quick),
        "device": str(resolve_device(cfg.device)),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "corpus": os.path.basename(args.text),
        "settings": s,
        "train": cfg.to_dict(),
        "step_time": timing,
        "ranking": {"metric": report["metric"], "n_archs": len(report["archs"]), "standalone_steps": s["steps"],
                    "standalone_seeds": s["standalone_seeds"], "extremes_forced": False,
                    "ceiling": report["stats"].get("ceiling"), "stats": report["stats"],
                    "supernet_steps": s["supernet_steps"], "per_mode": ranking,
                    "standalone_mean": float(np.mean(list(report["standalone"].values()))),
                    "archs": report["archs"], "standalone": report["standalone"],
                    "inherited": {m: e["inherited"] for m, e in report["supernets"].items()}},
        "seconds": time.perf_counter() - t_start,
    }
    atomic_write_json(args.out, _safe(result))
    print(f"step time ratio: mos-layer {timing['mos-layer']['ratio_median']:.3f} (max "
          f"{timing['mos-layer']['ratio_max']:.3f}), mos-neuron {timing['mos-neuron']['ratio_median']:.3f} "
          f"(max {timing['mos-neuron']['ratio_max']:.3f})")
    for m, r in ranking.items():
        print(f"{m:<11} gap {r['mean_abs_gap']:.4f}  tau {r['kendall_tau']:.3f}  spearman {r['spearman']:.3f}")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


def _safe(obj: Any) -> Any:
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_safe(v) for v in obj]
    return obj


if __name__ == "__main__":
    main()
