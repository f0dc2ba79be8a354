"""``recurrent``: RMoE, "Layerwise Recurrent Router for Mixture-of-Experts" (Qiu et al., ICLR
2025, arXiv:2408.06793).

Rule: in MoE layer i the token state x_i is projected to a small dimension r by a per-layer
projector (``x'_i = x_i W_p^i``), combined with the previous MoE layer's router state by one
GRU cell shared by all layers (``h_i = GRU(x'_i, h_{i-1})``, ``h_0 = 0``), and layer i's gate
reads that state: ``logits_i = h_i W_g^i``. The experts are then chosen as in ``topk``
(``moe_top_k``, optional capacity) and the loss is the Switch load-balancing loss (weight
``balance``, default 1.0; ``z_loss`` reported, weight 0 unless set). The recurrence runs over
layers, not over sequence positions, so all tokens are routed in parallel.

Options: ``hidden`` (r, default 32), ``balance``, ``z_loss``. The GRU cell is a module the
network owns once (``shared_modules``) and every recurrent layer reads from the
``RoutingState``; the state is reset at the start of every network forward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import nn

from archlab.core.errors import ArchlabError

from ..layers.elastic import ElasticLinear
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
from .topk import topk_gates

GRU_KEY = "recurrent_gru"
DEFAULT_HIDDEN = 32


def _hidden(options: Mapping[str, Any]) -> int:
    r = options.get("hidden", DEFAULT_HIDDEN)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ArchlabError(f"router_options['recurrent'].hidden: {r!r}; allowed: integers >= 1")
    return r


@register_router("recurrent")
class RecurrentRouter(Router):
    """Layerwise recurrent router (GRU across layers)."""

    option_names = ("hidden", "balance", "z_loss")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden = _hidden(self.options)
        self.proj = self.linear(self.d_max, self.hidden)
        self.gate = self.linear(self.hidden, self.experts_max)

    @staticmethod
    def shared_modules(options: Mapping[str, Any]) -> dict[str, nn.Module]:
        r = _hidden(options)
        return {GRU_KEY: nn.GRUCell(r, r)}

    def set_active(self, d_model: int, settings: RouteSettings) -> None:
        super().set_active(d_model, settings)
        if not self.plain:
            # not plain: self.linear made ElasticLinears
            cast(ElasticLinear, self.proj).set_active(d_model, self.hidden)
            cast(ElasticLinear, self.gate).set_active(self.hidden, settings.experts)

    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:
        gru = state.shared.get(GRU_KEY)
        if gru is None:
            raise ArchlabError("moe_router 'recurrent': the layer's RoutingState has no shared GRU "
                               "(build the layer with the network's routing state)")
        x_proj = self.proj(x)
        h_prev = state.hidden
        if h_prev is None or h_prev.shape[0] != x.shape[0]:
            h_prev = x_proj.new_zeros(x.shape[0], self.hidden)
        h = gru(x_proj, h_prev.to(x_proj.dtype))
        state.hidden = h
        logits = self.gate(h)
        probs, gates, experts = topk_gates(logits, settings.top_k)
        tokens, e, w, dropped = apply_capacity(gates, experts, settings.experts, settings.capacity)
        aux = {"load_balance": switch_load_balancing(probs, experts), "z_loss": router_z_loss(logits)}
        weights = {"load_balance": float(self.options.get("balance", 1.0)), "z_loss": float(self.options.get("z_loss", 0.0))}
        return Dispatch(tokens, e, w, x.shape[0], settings.experts, probs=probs, dropped=dropped, aux=aux, aux_weights=weights)
