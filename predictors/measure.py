"""Measure one module: timing statistics, parameters, MACs and peak memory.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), never from hand
counting. Peak memory on CUDA is ``torch.cuda.max_memory_allocated`` over one forward pass; on
the CPU a dispatch mode follows the bytes of every live tensor the forward pass creates
(activations) on top of the parameters and the input.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .targets import Runtime

if TYPE_CHECKING:
    import torch
    from torch import nn


def timing_stats(ms: np.ndarray) -> dict[str, float]:
    """``latency_ms`` (median), ``p10_ms``, ``p90_ms``, ``mean_ms``, ``spread`` ((p90-p10)/median)."""
    ms = np.asarray(ms, dtype=np.float64)
    med = float(np.median(ms))
    p10, p90 = (float(v) for v in np.percentile(ms, [10, 90]))
    return {"latency_ms": med, "p10_ms": p10, "p90_ms": p90, "mean_ms": float(ms.mean()),
            "spread": (p90 - p10) / med if med > 0 else float("nan"), "n_repeats": int(ms.size)}


def _tracker_class() -> type:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        """Peak bytes of tensors created while active (views share their storage)."""

        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, list[int]] = {}
            self.current = 0
            self.peak = 0

        def _release(self, ptr: int) -> None:
            entry = self.live.get(ptr)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                self.current -= entry[0]
                del self.live[ptr]

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.device.type != "meta":
                    storage = t.untyped_storage()
                    ptr = storage.data_ptr()
                    if ptr in self.live:
                        self.live[ptr][1] += 1
                    else:
                        self.live[ptr] = [storage.nbytes(), 1]
                        self.current += storage.nbytes()
                        self.peak = max(self.peak, self.current)
                    weakref.finalize(t, self._release, ptr)
            return out

    return LiveBytes


def count_costs(module: nn.Module, x: torch.Tensor, runtime: Runtime) -> dict[str, int]:
    """``params`` (count), ``macs`` (per forward of the whole batch), ``peak_mem_bytes``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module, x = runtime.place(module, x)
    params = sum(p.numel() for p in module.parameters())
    static = sum(p.numel() * p.element_size() for p in module.parameters()) + sum(
        b.numel() * b.element_size() for b in module.buffers()) + x.numel() * x.element_size()
    cuda = x.device.type == "cuda"
    with torch.inference_mode():
        if cuda:
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            base = torch.cuda.memory_allocated(x.device)
        counter = FlopCounterMode(display=False)
        if cuda:
            with counter:
                module(x)
            torch.cuda.synchronize(x.device)
            peak = static + torch.cuda.max_memory_allocated(x.device) - base
        else:
            tracker = _tracker_class()()
            with counter, tracker:
                module(x)
            peak = static + tracker.peak
    return {"params": int(params), "macs": int(counter.get_total_flops() // 2), "peak_mem_bytes": int(peak)}


def layer_container(module: nn.Module, n_layers: int) -> nn.ModuleList | None:
    """The first ``nn.ModuleList`` of ``module`` with exactly ``n_layers`` children (the
    per-layer blocks), or ``None``."""
    from torch import nn

    for sub in module.modules():
        if isinstance(sub, nn.ModuleList) and len(sub) == n_layers and n_layers > 0:
            return sub
    return None


def time_layers(module: nn.Module, x: torch.Tensor, runtime: Runtime, n_layers: int, repeats: int) -> list[float] | None:
    """Median ms of each per-layer block over ``repeats`` forward passes, timed by forward
    hooks (``perf_counter_ns``); CPU eager targets only, ``None`` when not measurable."""
    import time as _time

    import torch

    if runtime.target.kind != "cpu":
        return None
    module, x = runtime.place(module, x)
    blocks = layer_container(module, n_layers)
    if blocks is None:
        return None
    starts: dict[int, int] = {}
    spans: list[list[float]] = [[] for _ in range(n_layers)]
    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(lambda m, a, i=i: starts.__setitem__(i, _time.perf_counter_ns())))
        handles.append(block.register_forward_hook(
            lambda m, a, o, i=i: spans[i].append((_time.perf_counter_ns() - starts[i]) / 1e6)))
    try:
        with torch.inference_mode():
            module(x)  # one untimed pass with the hooks in place
            for s in spans:
                s.clear()
            for _ in range(repeats):
                module(x)
    finally:
        for h in handles:
            h.remove()
    return [float(np.median(s)) for s in spans]
