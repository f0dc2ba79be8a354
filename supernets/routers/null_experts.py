"""``null_experts``: AdaMoE, "Token-Adaptive Routing with Null Experts for Mixture-of-Experts
Language Models" (Zeng et al., Findings of EMNLP 2024, arXiv:2406.13233).

Rule: m null experts (``moe_null``) that compute nothing (output zero) join the E real ones;
the router ``softmax([x W_g, x W_null])`` over E + m experts picks the top k (``moe_top_k``)
as ``topk`` does (k = 1: the probability is the gate; k >= 2: renormalised over the k kept,
null ones included). A token that picks null experts uses fewer real experts, so the number
of real experts per token varies between 0 and k.

Load balancing (the paper's null-aware loss): the Switch loss ``(E + m) sum_i f_i P_i`` over
all E + m experts, with the null experts' ``f`` and ``P`` each replaced by their mean over
the null experts: null experts are identical, so the loss controls only their total usage
and does not push tokens from one null expert to another. With m = 0 this is exactly the
``topk`` router and its loss. Weight ``balance`` (default 1.0); ``z_loss`` reported (weight
0 unless set).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from archlab.core.errors import ArchlabError

from ..layers.elastic import ElasticLinear
from .base import (
    Dispatch,
    Router,
    RouteSettings,
    RoutingState,
    capacity_keep,
    register_router,
    router_z_loss,
    token_major,
)
from .topk import topk_gates


def null_aware_balance(probs: torch.Tensor, experts: torch.Tensor, n_real: int) -> torch.Tensor:
    """``(E + m) sum_i f_i P_i`` with the null experts' (index >= ``n_real``) f and P averaged."""
    total = probs.shape[-1]
    f = torch.bincount(experts.reshape(-1), minlength=total).to(probs.dtype) / max(experts.numel(), 1)
    p = probs.mean(0)
    if total > n_real:
        f = torch.cat([f[:n_real], f[n_real:].mean().expand(total - n_real)])
        p = torch.cat([p[:n_real], p[n_real:].mean().expand(total - n_real)])
    return total * (f * p).sum()


@register_router("null_experts")
class NullExpertsRouter(Router):
    """AdaMoE routing with ``moe_null`` zero-compute experts (options: ``balance``, ``z_loss``)."""

    option_names = ("balance", "z_loss")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.null_gate = self.linear(self.d_max, self.null_max) if self.null_max > 0 else None

    def set_active(self, d_model: int, settings: RouteSettings) -> None:
        super().set_active(d_model, settings)
        self.n_null = int(settings.null)
        if self.n_null > self.null_max:
            raise ArchlabError(f"moe_null: {self.n_null} is outside the layer's range 0..{self.null_max}")
        if self.null_gate is not None and not self.plain and self.n_null > 0:
            cast(ElasticLinear, self.null_gate).set_active(d_model, self.n_null)  # not plain: an ElasticLinear

    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:
        n_real = settings.experts
        logits = gate(x)
        if settings.null > 0 and self.null_gate is not None:
            logits = torch.cat([logits, self.null_gate(x)], dim=-1)
        probs, gates, experts = topk_gates(logits, settings.top_k)
        real = experts < n_real
        cap_keep, _ = capacity_keep(experts, n_real, settings.capacity)
        keep = real if cap_keep is None else real & cap_keep
        tokens, e, w = token_major(gates, experts, keep if settings.null > 0 or cap_keep is not None else None)
        dropped = None if cap_keep is None else ~cap_keep.all(-1)
        aux = {"load_balance": null_aware_balance(probs, experts, n_real), "z_loss": router_z_loss(logits)}
        weights = {"load_balance": float(self.options.get("balance", 1.0)), "z_loss": float(self.options.get("z_loss", 0.0))}
        return Dispatch(tokens, e, w, x.shape[0], n_real, probs=probs, dropped=dropped, null_slots=(~real).sum(-1),
                        aux=aux, aux_weights=weights)
