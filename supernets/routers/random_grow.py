"""``random_grow``: SMoE-Dropout, "Sparse MoE as the New Dropout: Scaling Dense and
Self-Slimmable Transformers" (Chen et al., ICLR 2023, arXiv:2303.01610).

Rule: the router is a randomly initialised linear map that is never trained (a fixed buffer,
``N(0, 1/d)`` entries from the ``seed`` option); each token takes the top-k of its logits and
the gates are the softmax over those k logits. During training k grows on a schedule with
the training progress t in [0, 1] (``RoutingState.progress``, set by the trainer or
``set_progress``): ``k(t) = 1 + floor(t * E)`` clipped to E, i.e. from one expert to all of
them. In inference (the "self-slimmable" property) k is the architecture's ``moe_top_k``, so
the active compute is chosen per architecture. With no progress recorded, training uses all
E experts (the end of the schedule). No auxiliary loss: a fixed router has nothing to
balance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .base import Dispatch, Router, RouteSettings, RoutingState, register_router, token_major


def grow_k(progress: float | None, n_experts: int) -> int:
    """Training top-k at progress ``t``: ``min(E, 1 + floor(t * E))`` (E when ``t`` is None)."""
    if progress is None:
        return n_experts
    return max(1, min(n_experts, 1 + math.floor(float(progress) * n_experts)))


@register_router("random_grow")
class RandomGrowRouter(Router):
    """Fixed random router with a growing k (option ``seed``, default 0)."""

    option_names = ("seed",)
    fixed: torch.Tensor  # a buffer (register_buffer in __init__)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        g = torch.Generator().manual_seed(int(self.options.get("seed", 0)))
        w = torch.randn(self.experts_max, self.d_max, generator=g) / math.sqrt(self.d_max)
        self.register_buffer("fixed", w)

    def set_active(self, d_model: int, settings: RouteSettings) -> None:
        super().set_active(d_model, settings)
        self.n_experts = settings.experts

    @torch.no_grad()
    def copy_to(self, plain: Router) -> Router:
        cast(torch.Tensor, plain.fixed).copy_(self.fixed[: plain.experts_max, : plain.d_max])  # the same router's buffer
        return plain

    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:
        logits = F.linear(x, self.fixed[: settings.experts, : x.shape[-1]].to(x.dtype)).float()
        k = grow_k(state.progress, settings.experts) if self.training else settings.top_k
        top, experts = logits.topk(k, dim=-1)
        gates = F.softmax(top, dim=-1)
        tokens, e, w = token_major(gates, experts)
        return Dispatch(tokens, e, w, x.shape[0], settings.experts, probs=F.softmax(logits, -1))


def set_progress(net: nn.Module, progress: float) -> None:
    """Record training progress ``progress`` in [0, 1] on every routing state under ``net``."""
    for m in net.modules():
        state = getattr(m, "routing_state", None)
        if state is not None:
            state.progress = float(progress)
