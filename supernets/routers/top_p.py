"""``top_p``: dynamic routing, "Harder Tasks Need More Experts: Dynamic Routing in MoE Models"
(Huang et al., ACL 2024, arXiv:2403.07652).

Rule: ``P = softmax(x W_g)`` over the E experts; sort P in descending order and keep the
smallest prefix whose cumulative sum reaches the threshold p (``moe_top_p``); the token goes
to those experts with gate ``P_e`` (not renormalised, as in the paper's
``sum_{e in S} P_e E_e(x)``). p = 1 keeps every expert; a one-hot router keeps one.

Auxiliary losses (the paper's training objective ``L_lm + alpha L_b + beta L_d``):
``load_balance`` (``L_b``, the Switch form ``E sum_i f_i P_i`` with ``f_i`` the share of the
assignments that went to expert i), weight ``balance`` (default 1.0, i.e. ``alpha`` =
``TrainConfig.moe_aux_coef``), and ``dynamic`` (``L_d = -sum_e P_e log P_e``, mean over
tokens: the entropy regulariser that keeps the router from spreading mass over every
expert), weight ``dynamic`` (default 0.01, i.e. ``beta = 1e-4`` with the default
``moe_aux_coef`` 1e-2, the paper's values).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .base import (
    Dispatch,
    Router,
    RouteSettings,
    RoutingState,
    mean_entropy,
    register_router,
    switch_load_balancing,
)


def top_p_mask(probs: torch.Tensor, p: float) -> torch.Tensor:
    """(N, E) bool: the smallest set of largest probabilities whose sum reaches ``p``."""
    if p >= 1.0:
        return torch.ones_like(probs, dtype=torch.bool)
    ranked, order = probs.sort(dim=-1, descending=True)
    before = ranked.cumsum(-1) - ranked  # mass of the experts ranked above
    keep_sorted = before < p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


@register_router("top_p")
class TopPRouter(Router):
    """Top-p dynamic routing (options: ``balance`` and ``dynamic`` loss weights)."""

    option_names = ("balance", "dynamic")

    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:
        probs = F.softmax(gate(x).float(), dim=-1)
        mask = top_p_mask(probs, float(settings.top_p))
        tokens, experts = mask.nonzero(as_tuple=True)  # token-major
        weights = probs[tokens, experts]
        aux = {"load_balance": switch_load_balancing(probs, experts), "dynamic": mean_entropy(probs)}
        w = {"load_balance": float(self.options.get("balance", 1.0)), "dynamic": float(self.options.get("dynamic", 0.01))}
        return Dispatch(tokens, experts, weights, x.shape[0], settings.experts, probs=probs, aux=aux, aux_weights=w)
