"""Plain twin of ``TransformerLM``: the standalone module ``net.extract(arch)`` returns, ordinary torch
layers only, rebuilt from its JSON ``dims`` (see ``archlab.supernets.families.plain``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.attention import PlainSelfAttention
from ..layers.elastic import make_activation
from ..layers.moe import PlainMoEFFN
from ..layers.moe_space import MOE_EXPERTS, MOE_TOP_K, layer_settings
from ..routers import ROUTERS, RoutingState
from .plain import PlainSubnet, register_plain


class PlainBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln1(x)); x + ffn(ln2(x)).

    ``moe`` (``PlainMoEFFN`` keyword arguments: ``experts`` >= 2, ``top_k``, ``router``, ...)
    makes the FFN a token-routed ``PlainMoEFFN`` (``self.moe``); otherwise it is
    ``ffn_in``/``ffn_out``. ``where`` names the layer in errors.
    """

    def __init__(self, d: int, n_head: int, head_dim: int, ffn: int, activation: str, eps: float,
                 moe: Mapping[str, Any] | None = None, where: str = "layers[i]") -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.attn = PlainSelfAttention(d, n_head, head_dim)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.moe: PlainMoEFFN | None = None
        if moe is not None:
            self.moe = PlainMoEFFN(d, ffn, activation=activation, where=where, **moe)
        else:
            self.ffn_in = nn.Linear(d, ffn)
            self.act = make_activation(activation)
            self.ffn_out = nn.Linear(ffn, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        if self.moe is not None:
            return x + self.moe(self.ln2(x))
        return x + self.ffn_out(self.act(self.ffn_in(self.ln2(x))))


def _layer_moe(layer: Mapping[str, Any], where: str, options: Mapping[str, Any], state: RoutingState,
               index: int) -> dict[str, Any] | None:
    """``PlainMoEFFN`` keyword arguments of a plain layer's dims entry; ``None`` for a dense FFN
    (no ``moe_experts``, or ``moe_experts`` 1, whose top-k can only be 1)."""
    experts = layer.get(MOE_EXPERTS, 1)
    if experts == 1 and layer.get(MOE_TOP_K, 1) == 1:
        return None
    name, s = layer_settings(layer, where, clip=False)
    return {"experts": s.experts, "top_k": s.top_k, "router": name, "top_p": s.top_p, "capacity": s.capacity,
            "null": s.null, "options": options.get(name), "state": state, "layer_index": index}


@register_plain
class PlainTransformerLM(PlainSubnet):
    """Decoder-only LM: token + position embedding, pre-LN blocks, final LN, (tied) head.

    ``dims["layers"][i]`` has ``n_head`` and ``ffn``, and for a token-routed MoE FFN also
    ``moe_experts`` (>= 2) and ``moe_top_k`` (1..moe_experts, the top-k that runs).
    """

    family = "transformer_lm"
    positions: torch.Tensor  # a buffer (register_buffer in __init__)

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__(dims, arch)
        d, v, ctx = int(self._get("d_model")), int(self._get("vocab_size")), int(self._get("context"))
        eps, act, hd = float(self.dims.get("eps", 1e-5)), self.dims.get("activation", "gelu"), int(self._get("head_dim"))
        self.context = ctx
        options = dict(self.dims.get("router_options") or {})
        layers = self._get("layers")
        used = {str(la.get("moe_router", "topk")) for la in layers if la.get(MOE_EXPERTS, 1) > 1}
        shared: dict[str, nn.Module] = {}
        for name in sorted(used & set(ROUTERS)):
            shared.update(ROUTERS[name].shared_modules(options.get(name, {})))
        self.routing_shared = nn.ModuleDict(shared) if shared else None
        self.routing_state = RoutingState(shared)
        self.tok = nn.Embedding(v, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(
            PlainBlock(d, int(layer["n_head"]), hd, int(layer["ffn"]), act, eps,
                       _layer_moe(layer, f"layers[{i}]", options, self.routing_state, i), f"layers[{i}]")
            for i, layer in enumerate(layers)
        )
        self.ln_f = nn.LayerNorm(d, eps=eps)
        self.tie_weights = bool(self.dims.get("tie_weights", True))
        self.head = None if self.tie_weights else nn.Linear(d, v, bias=False)
        self.register_buffer("positions", torch.arange(ctx), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(self.positions[: idx.shape[1]])
        self.routing_state.reset()
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return F.linear(x, self.tok.weight) if self.head is None else self.head(x)

    def aux_loss(self) -> torch.Tensor:
        """Sum of the MoE layers' load-balancing losses of the last forward (zero if none)."""
        blocks = cast("list[PlainBlock]", self.blocks)  # ModuleList: untyped items
        losses = [b.moe.aux_loss for b in blocks if b.moe is not None and b.moe.aux_loss is not None]
        return torch.stack(losses).sum() if losses else torch.zeros((), device=self.positions.device)
