"""Supernet overhead: one training step through the supernet vs. the extracted module.

For random architectures of ``TransformerLM`` and ``ConvNet`` (20 each; ``--quick``: 5),
times one training step (forward, loss, backward, AdamW step (``--optimizer``, default
fused), zero_grad) on the supernet
with that arch active and on ``net.extract(arch)``, same batch, alternating the two in one
process; per arch the ratio of median step times (supernet / extracted). Each side uses the
AdamW it is trained with, same hyperparameters: the supernet ``FastSliceAdamW`` (what
``archlab.supernets`` training uses: updates the active slices only), the extracted module
``torch.optim.AdamW``. Goal: median ratio <= 1.05 and max <= 1.15. Also records the peak
memory of one step of each: on CUDA ``torch.cuda.max_memory_allocated`` (bytes above what was allocated before the step); on CPU
the peak of the torch CPU allocator seen by ``torch.profiler`` (``profile_memory=True``),
likewise above the bytes live before the step. Persistent bytes (parameters + gradients +
optimizer state, including FastSliceAdamW's workspace) are reported beside it.

Writes ``bench/results/supernet_overhead.json`` (atomically).

    python bench/supernet_overhead.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.io import atomic_write_json
from archlab.core.progress import progress
from archlab.supernets import ConvNet, TransformerLM, pick_device
from archlab.supernets.training.optim import FastSliceAdamW

RESULT = Path(__file__).resolve().parent / "results" / "supernet_overhead.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


OPTIMIZERS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lm: bool, optimizer: str = "fused",
              supernet: bool = False) -> Any:
    kwargs = {"lr": 1e-4, **OPTIMIZERS[optimizer]}
    # each side gets the AdamW its users train it with, same hyperparameters: the supernet the
    # FastSliceAdamW of archlab.supernets.training (updates the active slices only), the
    # extracted module torch's AdamW
    opt = (FastSliceAdamW(model.parameters(), model, **kwargs) if supernet
           else torch.optim.AdamW(model.parameters(), **kwargs))

    def step() -> None:
        out = model(x)
        loss = F.cross_entropy(out.flatten(0, 1), y.flatten()) if lm else F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, opt


def persistent_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    n += sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    for state in opt.state.values():
        n += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    workspace = getattr(opt, "workspace_bytes", None)  # FastSliceAdamW's buffers for dense copies
    return n + (workspace() if workspace is not None else 0)


def peak_step_bytes(step: Any, device: torch.device) -> int:
    """Peak bytes allocated during one step above those live before it."""
    if device.type == "cuda":
        _sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        events = json.loads(Path(path).read_text())["traceEvents"]
    finally:
        os.unlink(path)
    mem = [e["args"] for e in events if e.get("name") == "[memory]" and "Total Allocated" in e.get("args", {})]
    if not mem:
        return 0
    base = mem[0]["Total Allocated"] - mem[0]["Bytes"]
    return int(max(m["Total Allocated"] for m in mem) - base)


def time_pair(super_step: Any, sub_step: Any, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median seconds per step of each, measured alternately (ABAB...)."""
    ts: list[float] = []
    tp: list[float] = []
    for r in range(repeats):
        order = [(super_step, ts), (sub_step, tp)] if r % 2 == 0 else [(sub_step, tp), (super_step, ts)]
        for step, sink in order:
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            sink.append(time.perf_counter() - t0)
    return statistics.median(ts), statistics.median(tp)


def bench_family(name: str, net: Any, batch: tuple[torch.Tensor, torch.Tensor], n_archs: int, repeats: int,
                 warmup: int, seed: int, device: torch.device, memory: bool, optimizer: str) -> dict[str, Any]:
    lm = name == "TransformerLM"
    x, y = batch
    rows = []
    archs = net.space.sample_many(n_archs, seed=seed)
    for arch in progress(archs, desc=name, unit="arch"):
        net.set_arch(arch)
        net.train()
        sub = net.extract(arch).train()
        super_step, super_opt = make_step(net, x, y, lm, optimizer, supernet=True)
        sub_step, sub_opt = make_step(sub, x, y, lm, optimizer)
        for _ in range(warmup):
            super_step()
            sub_step()
        t_super, t_sub = time_pair(super_step, sub_step, repeats, device)
        row = {
            "arch": arch.key,
            "summary": net.space.summary(arch),
            "supernet_ms": round(t_super * 1e3, 4),
            "extracted_ms": round(t_sub * 1e3, 4),
            "ratio": round(t_super / t_sub, 4),
            "extracted_params": sum(p.numel() for p in sub.parameters()),
        }
        if memory:
            row["supernet_peak_step_bytes"] = peak_step_bytes(super_step, device)
            row["extracted_peak_step_bytes"] = peak_step_bytes(sub_step, device)
            row["supernet_persistent_bytes"] = persistent_bytes(net, super_opt)
            row["extracted_persistent_bytes"] = persistent_bytes(sub, sub_opt)
        rows.append(row)
    ratios = [r["ratio"] for r in rows]
    out = {
        "supernet_params": sum(p.numel() for p in net.parameters()),
        "median_ratio": round(statistics.median(ratios), 4),
        "max_ratio": round(max(ratios), 4),
        "median_supernet_ms": round(statistics.median(r["supernet_ms"] for r in rows), 4),
        "median_extracted_ms": round(statistics.median(r["extracted_ms"] for r in rows), 4),
        "archs": rows,
    }
    if memory:
        out["median_peak_step_bytes_ratio"] = round(
            statistics.median(r["supernet_peak_step_bytes"] / max(1, r["extracted_peak_step_bytes"]) for r in rows), 4
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 archs per family, 9 repeats (< 1 minute)")
    ap.add_argument("--archs", type=int, default=None, help="architectures per family (default 20; quick 5)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per arch and model (default 21; quick 9)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="fused",
                    help="AdamW implementation for both models (default fused)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    n_archs = args.archs or (5 if args.quick else 20)
    repeats = args.repeats or (9 if args.quick else 21)
    warmup = 2 if args.quick else 5
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)

    lm = TransformerLM(vocab_size=65, context=64).to(device)
    lm_batch = (torch.randint(0, 65, (8, 64), generator=g).to(device), torch.randint(0, 65, (8, 64), generator=g).to(device))
    cnn = ConvNet(num_classes=10, in_channels=1, image_size=28).to(device)
    cnn_batch = (torch.randn(32, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (32,), generator=g).to(device))

    t0 = time.perf_counter()
    families = {
        "TransformerLM": bench_family("TransformerLM", lm, lm_batch, n_archs, repeats, warmup, args.seed, device,
                                      not args.no_memory, args.optimizer),
        "ConvNet": bench_family("ConvNet", cnn, cnn_batch, n_archs, repeats, warmup, args.seed, device,
                                not args.no_memory, args.optimizer),
    }
    result = {
        "benchmark": "supernet_overhead",
        "quick": bool(args.quick),
        "device": str(device),
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "archs_per_family": n_archs,
        "repeats": repeats,
        "warmup": warmup,
        "optimizer": (f"AdamW(lr=1e-4, {args.optimizer}), zero_grad(set_to_none=True); supernet: "
                      f"archlab.supernets.training.optim.FastSliceAdamW, extracted: torch.optim.AdamW"),
        "batches": {"TransformerLM": "8 x 64 tokens, vocab 65", "ConvNet": "32 x 1 x 28 x 28"},
        "memory_method": (
            "torch.cuda.max_memory_allocated above the bytes allocated before the step" if device.type == "cuda"
            else "torch.profiler(profile_memory=True) peak of the CPU allocator above the bytes live before the step"
        ),
        "goal": {"median_ratio": 1.05, "max_ratio": 1.15},
        "families": families,
        "median_ratio": max(f["median_ratio"] for f in families.values()),
        "max_ratio": max(f["max_ratio"] for f in families.values()),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    res = main()
    summary = {k: {"median_ratio": v["median_ratio"], "max_ratio": v["max_ratio"]} for k, v in res["families"].items()}
    print(json.dumps({"families": summary, "wall_s": res["wall_s"], "out": str(RESULT)}))
