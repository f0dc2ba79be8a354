"""Memory of a mixed op: the entangled mix (one op) against a per-candidate mixed op.

``CandidateMixedConv`` is the DARTS-style reference: one convolution per candidate kernel
size, every one run and its output kept for the backward pass, outputs summed with the
architecture weights. ``entangled_conv`` is the same choice on one entangled weight
(``archlab.supernets.soft.ops``): the kernels' zero-padded centre crops are mixed first and one
convolution runs. ``peak_bytes`` measures the peak of live allocations of a callable with
``torch.profiler`` (``profile_memory=True``), replaying the allocation events in time order,
on CPU or CUDA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv import ElasticConv2d
from .ops import SoftConv2d, kernel_mask


def peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Peak bytes of tensors allocated (and not yet freed) while ``fn()`` runs, on ``device``'s
    kind (``cpu`` or ``cuda``), from the profiler's memory events; memory live before the call
    is not counted."""
    from torch.profiler import ProfilerActivity, profile

    dev = torch.device(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities, profile_memory=True) as prof:
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    want = "CUDA" if dev.type == "cuda" else "CPU"
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and want in str(e.device_type())]
    live = peak = 0
    for _, n in sorted(events):
        live += n
        peak = max(peak, live)
    return int(peak)


class CandidateMixedConv(nn.Module):
    """DARTS-style mixed op over kernel sizes: ``sum_c p_c conv_c(x)``, every candidate run."""

    def __init__(self, channels: int, kernels: Sequence[int]) -> None:
        super().__init__()
        self.kernels = [int(k) for k in kernels]
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, k, padding=k // 2, bias=False) for k in self.kernels)

    def forward(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return sum(p * conv(x) for p, conv in zip(probs, self.convs))


def entangled_conv(channels: int, kernels: Sequence[int]) -> ElasticConv2d:
    """An elastic conv whose largest kernel is ``max(kernels)`` (entangled weight)."""
    return ElasticConv2d(channels, channels, max(int(k) for k in kernels))


def entangled_forward(layer: ElasticConv2d, x: torch.Tensor, probs: torch.Tensor,
                      kernels: Sequence[int]) -> torch.Tensor:
    """The entangled mix: centre-crop masks mixed by ``probs``, one convolution."""
    layer.soft = SoftConv2d(None, None, kernel_mask(layer.kernel_max, probs, kernels))
    try:
        return layer(x)
    finally:
        layer.soft = None


def mixed_op_memory(channels: int = 16, kernels: Sequence[int] = (1, 3, 5, 7, 9), layers: int = 8,
                    batch: int = 8, size: int = 32, device: torch.device | str = "cpu",
                    seed: int = 0) -> dict[str, Any]:
    """Peak bytes of forward + backward of ``layers`` mixed conv layers (ReLU between, one
    choice over ``kernels`` per layer): the entangled mix, the per-candidate mixed op, and
    plain convolutions of the largest kernel (one op per layer)."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    x = torch.randn(batch, channels, size, size, device=dev)
    logits = torch.zeros(layers, len(kernels), device=dev, requires_grad=True)
    ent = nn.ModuleList(entangled_conv(channels, kernels) for _ in range(layers)).to(dev)
    cand = nn.ModuleList(CandidateMixedConv(channels, kernels) for _ in range(layers)).to(dev)
    k = max(kernels)
    plain = nn.ModuleList(nn.Conv2d(channels, channels, k, padding=k // 2, bias=False) for _ in range(layers)).to(dev)

    def run(step: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def go() -> None:
            h, probs = x, F.softmax(logits, -1)
            for i in range(layers):
                h = F.relu(step(i, h, probs[i]))
            h.square().mean().backward()
        return go

    runs = {
        "entangled_bytes": run(lambda i, h, p: entangled_forward(cast(ElasticConv2d, ent[i]), h, p, kernels)),
        "per_candidate_bytes": run(lambda i, h, p: cand[i](h, p)),
        "one_op_bytes": run(lambda i, h, p: plain[i](h)),
    }
    for fn in runs.values():  # warm-up (allocator, kernels)
        fn()
    out: dict[str, Any] = {name: float(peak_bytes(fn, dev)) for name, fn in runs.items()}
    out["entangled_over_per_candidate"] = out["entangled_bytes"] / out["per_candidate_bytes"]
    out["entangled_over_one_op"] = out["entangled_bytes"] / out["one_op_bytes"]
    out.update(channels=channels, kernels=list(kernels), layers=layers, batch=batch, size=size)
    return out


__all__ = ["CandidateMixedConv", "entangled_conv", "entangled_forward", "mixed_op_memory", "peak_bytes"]
