"""``topk``: softmax top-k routing with an optional expert capacity and the router z-loss.

Rule (Shazeer et al., 2017; Switch Transformer, Fedus et al., 2022, JMLR 23(120); Mixtral):
``probs = softmax(x W_g)`` over the E active experts (float32); each token goes to its k most
probable experts. With k = 1 the gate is the probability itself (Switch), with k >= 2 the
kept probabilities are renormalised to sum to 1 (Mixtral).

Capacity (Switch / GShard; ``moe_capacity`` = capacity factor c): each expert takes at most
``ceil(c * N * k / E)`` assignments of the N tokens; first choices of all tokens are served
before second choices (GShard, ST-MoE). Assignments over capacity are dropped; a token that
loses all of them gets a zero MoE output and passes through the residual connection.

Auxiliary losses: ``load_balance`` = ``E * sum_i f_i P_i`` (Switch; ``f_i`` share of the
assignments chosen for expert i, ``P_i`` mean router probability), weight ``balance``
(default 1.0), and ``z_loss`` = ``mean_t logsumexp(logits_t)^2`` (router z-loss, ST-MoE,
Zoph et al., 2022, arXiv:2202.08906), weight ``z_loss`` (default 0.0, so the default router
trains exactly as before; ST-MoE uses 1e-3 absolute, i.e. 0.1 relative to a 1e-2 balance
coefficient). Both are always computed and reported.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from archlab.core.errors import ArchlabError

from .base import (
    Dispatch,
    Router,
    RouteSettings,
    RoutingState,
    apply_capacity,
    register_router,
    router_z_loss,
    switch_load_balancing,
)


def topk_gates(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(probs (N, E) float32, gates (N, k), experts (N, k))`` of top-k softmax routing."""
    n_experts = logits.shape[-1]
    if not 1 <= top_k <= n_experts:
        raise ArchlabError(f"moe_top_k: {top_k} with {n_experts} experts; allowed: 1..{n_experts}")
    probs = F.softmax(logits.float(), dim=-1)
    top, experts = probs.topk(top_k, dim=-1)
    gates = top if top_k == 1 else top / top.sum(-1, keepdim=True)
    return probs, gates, experts


@register_router("topk")
class TopKRouter(Router):
    """Top-k softmax routing (options: ``balance`` and ``z_loss`` loss weights)."""

    option_names = ("balance", "z_loss")

    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:
        logits = gate(x)
        probs, gates, experts = topk_gates(logits, settings.top_k)
        tokens, e, w, dropped = apply_capacity(gates, experts, settings.experts, settings.capacity)
        aux = {"load_balance": switch_load_balancing(probs, experts), "z_loss": router_z_loss(logits)}
        weights = {"load_balance": float(self.options.get("balance", 1.0)), "z_loss": float(self.options.get("z_loss", 0.0))}
        return Dispatch(tokens, e, w, x.shape[0], settings.experts, probs=probs, dropped=dropped, aux=aux, aux_weights=weights)
