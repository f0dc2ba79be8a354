"""``expert_choice``: every expert picks its top tokens (Zhou et al., 2022, "Mixture-of-Experts
with Expert Choice Routing", NeurIPS 2022, arXiv:2202.09368).

Rule: token-to-expert scores ``S = softmax(x W_g)`` over the E experts (N, E); each expert
takes the ``C = ceil(N * c / E)`` tokens with the highest score in its column (c: capacity
factor ``moe_capacity``, default 1.0; the average number of experts per token is c), with
gate ``S[t, e]``. A token may be picked by several experts or by none (it then passes through
the residual and counts as dropped). Every expert processes exactly C tokens, so the load is
perfectly balanced by construction (load CV 0) and the paper uses no balancing loss.

Note: the choice looks at all N tokens of the batch at once, including later positions of a
sequence, so it is not causal for autoregressive generation (as the paper notes); here it
is provided for comparison at training/evaluation time. ``z_loss`` (ST-MoE router z-loss)
is reported with weight ``z_loss`` (default 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .base import Dispatch, Router, RouteSettings, RoutingState, register_router, router_z_loss

DEFAULT_CAPACITY = 1.0


@register_router("expert_choice")
class ExpertChoiceRouter(Router):
    """Expert-choice routing (option: ``z_loss`` weight)."""

    option_names = ("z_loss",)

    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:
        logits = gate(x)
        n, n_experts = logits.shape
        probs = F.softmax(logits.float(), dim=-1)
        c = DEFAULT_CAPACITY if settings.capacity is None else float(settings.capacity)
        cap = min(n, max(1, math.ceil(n * c / n_experts)))
        top, idx = probs.t().topk(cap, dim=-1)  # (E, C): each expert's tokens
        experts = torch.arange(n_experts, device=x.device).repeat_interleave(cap)
        tokens, weights = idx.reshape(-1), top.reshape(-1)
        per_token = torch.bincount(tokens, minlength=n)
        aux = {"z_loss": router_z_loss(logits)}
        return Dispatch(tokens, experts, weights, n, n_experts, probs=probs, dropped=per_token == 0, aux=aux,
                        aux_weights={"z_loss": float(self.options.get("z_loss", 0.0))})
