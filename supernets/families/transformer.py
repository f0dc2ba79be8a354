"""``TransformerLM``: decoder-only causal language model supernet.

Elastic depth (``n_layer``), width (``d_model``, shared by every layer), per-layer heads
(``layers[i].n_head``, fixed head size: see ``archlab.supernets.layers.attention``) and FFN size
(``layers[i].ffn``). Token + learned position embeddings, pre-LN blocks, final LayerNorm,
output head tied to the token embedding (or untied).

Optional token-routed mixture-of-experts FFNs (``archlab.supernets.layers.moe``): when the space's
``layers`` block has ``moe_experts`` (and optionally ``moe_top_k``), every block's FFN is an
``ElasticMoEFFN`` (``blocks[i].moe``) whose expert count and top-k are searched per layer
(``moe_experts=1``: a dense FFN). Without ``moe_*`` names the model is unchanged (same
parameters, outputs and checkpoints). ``aux_loss()`` sums the load-balancing losses of the
last forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace
from archlab.spaces.library import transformer_lm_space

from ..base import Supernet, extreme_arch, max_value
from ..layers.attention import ElasticSelfAttention
from ..layers.banks import BankFactory
from ..layers.elastic import (
    ElasticDepth,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    make_activation,
)
from ..layers.moe import ElasticExpert, ElasticMoEFFN
from ..layers.moe_space import MoELimits, layer_settings, moe_space_limits, settings_entry
from ..routers import ROUTERS, RoutingState
from .transformer_plain import PlainBlock, PlainTransformerLM


class ElasticBlock(nn.Module):
    """Pre-LN block: x + attn(ln1(x)); x + ffn_out(act(ffn_in(ln2(x)))).

    With ``experts_max`` > 0 the FFN is a token-routed ``ElasticMoEFFN`` (``self.moe``)
    instead of ``ffn_in``/``ffn_out``.
    """

    def __init__(
        self, d_max: int, heads_max: int, head_dim: int, ffn_max: int, activation: str, eps: float, factory: BankFactory,
        experts_max: int = 0, moe: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.ln1 = ElasticLayerNorm(d_max, eps, factory)
        self.attn = ElasticSelfAttention(d_max, heads_max, head_dim, True, factory)
        self.ln2 = ElasticLayerNorm(d_max, eps, factory)
        self.moe: ElasticMoEFFN | None = None
        if experts_max:
            self.moe = ElasticMoEFFN(d_max, ffn_max, experts_max, activation, factory, **dict(moe or {}))
        else:
            self.ffn_in = ElasticLinear(d_max, ffn_max, True, factory, role="ffn_in")
            self.act = make_activation(activation)
            self.ffn_out = ElasticLinear(ffn_max, d_max, True, factory, role="ffn_out")

    def set_active(self, d_model: int, n_head: int, ffn: int, *moe: Any) -> None:
        self.ln1.set_active(d_model)
        self.attn.set_active(d_model, n_head)
        self.ln2.set_active(d_model)
        if self.moe is not None:
            self.moe.set_active(d_model, ffn, *(moe or (1, 1)))
        else:
            self.ffn_in.set_active(d_model, ffn)
            self.ffn_out.set_active(ffn, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        if self.moe is not None:
            return x + self.moe(self.ln2(x))
        return x + self.ffn_out(self.act(self.ffn_in(self.ln2(x))))

    @torch.no_grad()
    def copy_to(self, plain: PlainBlock) -> None:
        self.ln1.copy_to(plain.ln1)
        self.attn.qkv.copy_to(plain.attn.qkv)
        self.attn.proj.copy_to(plain.attn.proj)
        self.ln2.copy_to(plain.ln2)
        if self.moe is None:
            self.ffn_in.copy_to(plain.ffn_in)
            self.ffn_out.copy_to(plain.ffn_out)
        elif plain.moe is not None:
            self.moe.copy_to(plain.moe)
        else:  # a dense layer of an MoE space: expert 0 is its FFN
            expert = cast(ElasticExpert, self.moe.experts[0])  # ModuleList: untyped items
            expert.ffn_in.copy_to(plain.ffn_in)
            expert.ffn_out.copy_to(plain.ffn_out)


class TransformerLM(Supernet):
    """Decoder-only transformer supernet: ``net(ids (B, T)) -> logits (B, T, vocab_size)``."""

    family = "transformer_lm"
    requires = {"n_layer": True, "d_model": True, "layers": {"n_head": True, "ffn": True}}
    supports_moe = True

    def __init__(
        self,
        space: SearchSpace | None = None,
        vocab_size: int = 65,
        context: int = 128,
        head_dim: int | None = None,
        tie_weights: bool = True,
        activation: str = "gelu",
        eps: float = 1e-5,
        sharing: str = "entangled",
        sharing_options: Mapping[str, Any] | None = None,
        roles: Any = None,
        router_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        space = space if space is not None else self.default_space()
        super().__init__(space, sharing=sharing, sharing_options=sharing_options, roles=roles)
        p = space.params
        layer = p["layers"].params  # type: ignore[attr-defined]
        depth_max = int(max_value(p["n_layer"], "n_layer"))
        d_max = int(max_value(p["d_model"], "d_model"))
        heads_max = int(max_value(layer["n_head"], "layers[i].n_head"))
        ffn_max = int(max_value(layer["ffn"], "layers[i].ffn"))
        limits: MoELimits = moe_space_limits(space, self.family)
        experts_max = limits.experts
        router_options = {str(k): dict(v) for k, v in (router_options or {}).items()}
        for name in router_options:
            if name not in ROUTERS:
                raise ArchlabError(f"router_options: unknown router {name!r}; allowed: {', '.join(sorted(ROUTERS))}")
        head_dim = int(head_dim) if head_dim else max(1, d_max // heads_max)
        if vocab_size < 1 or context < 1:
            raise ArchlabError(f"vocab_size and context must be >= 1, got {vocab_size}, {context}")
        make_activation(activation)
        self.dims = {
            "vocab_size": int(vocab_size), "context": int(context), "head_dim": head_dim,
            "tie_weights": bool(tie_weights), "activation": activation, "eps": float(eps),
        }
        if router_options:
            self.dims["router_options"] = router_options
        shared: dict[str, nn.Module] = {}
        for name in limits.routers:
            shared.update(ROUTERS[name].shared_modules(router_options.get(name, {})))
        self.routing_shared = nn.ModuleDict(shared) if shared else None
        self.routing_state = RoutingState(shared)
        self.vocab_size, self.context, self.head_dim = int(vocab_size), int(context), head_dim
        f = self.bank_factory
        self.tok = ElasticEmbedding(vocab_size, d_max, f, role="embed")
        self.pos = ElasticEmbedding(context, d_max, f, role="embed")
        self.blocks = ElasticDepth(
            ElasticBlock(d_max, heads_max, head_dim, ffn_max, activation, eps, f, experts_max, {
                "routers": limits.routers, "null_max": limits.null, "router_options": router_options,
                "state": self.routing_state, "layer_index": i})
            for i in range(depth_max)
        )
        self.has_moe = experts_max > 0
        self.ln_f = ElasticLayerNorm(d_max, eps, f)
        self.head = None if tie_weights else ElasticLinear(d_max, vocab_size, False, f, role="head")
        self.register_buffer("positions", torch.arange(context), persistent=False)
        self.set_arch(extreme_arch(space))

    @classmethod
    def default_space(cls, **kwargs: Any) -> SearchSpace:
        """``transformer_lm_space``: n_layer 1..4, d_model {64, 96, 128}, heads {2, 4}, ffn {128, 256, 512}."""
        return transformer_lm_space(**kwargs)

    def _apply_arch(self, arch: Arch) -> None:
        d = int(arch["d_model"])
        self.tok.set_active(d)
        self.pos.set_active(d)
        self.blocks.set_depth(int(arch["n_layer"]))
        for block, layer in zip(self.blocks, arch["layers"]):
            moe: tuple[Any, ...] = ()
            if self.has_moe:
                name, s = layer_settings(layer)
                moe = (s.experts, s.top_k, name, s.top_p, s.capacity, s.null)
            block.set_active(d, int(layer["n_head"]), int(layer["ffn"]), *moe)
        self.ln_f.set_active(d)
        if self.head is not None:
            self.head.set_active(d, self.vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.context:
            raise ArchlabError(f"sequence length {t} exceeds the context {self.context}")
        # token weight sliced once for the embedding and the tied head; positions 0..t-1 are
        # the first t rows of the position table (a slice: no gather, no scatter-add backward)
        tok, _ = self.tok.active_weight()
        pos, _ = self.pos.active_weight()
        x = F.embedding(idx, tok) + pos[:t]
        self.routing_state.reset()
        x = self.blocks(x)
        x = self.ln_f(x)
        if self.head is not None:
            return self.head(x)
        return F.linear(x, tok)

    def aux_loss(self) -> torch.Tensor:
        """Sum of the load-balancing losses (``archlab.supernets.layers.moe``) the routed layers of
        the active arch recorded in the last forward; a zero scalar when none did."""
        losses = [b.moe.aux_loss for b in self.blocks.active() if b.moe is not None and b.moe.aux_loss is not None]
        if not losses:
            return torch.zeros((), device=self._device())
        return torch.stack(losses).sum()

    def _extract(self) -> PlainTransformerLM:
        arch = self.arch
        layers = []
        for block, la in zip(self.blocks, arch["layers"]):
            entry = {"n_head": int(la["n_head"]), "ffn": int(la["ffn"])}
            if block.moe is not None and block.moe.n_experts > 1:
                entry.update(settings_entry(block.moe.router_name, block.moe.settings))
            layers.append(entry)
        dims = {**self.dims, "d_model": int(arch["d_model"]), "layers": layers}
        p = next(self.parameters())
        plain = PlainTransformerLM(dims, arch.to_dict()).to(device=p.device, dtype=p.dtype)
        self.tok.copy_to(plain.tok)
        self.pos.copy_to(plain.pos)
        for i in range(self.blocks.depth):
            self.blocks[i].copy_to(cast(PlainBlock, plain.blocks[i]))  # ModuleList: untyped items
        self.ln_f.copy_to(plain.ln_f)
        if self.head is not None:
            self.head.copy_to(cast(nn.Linear, plain.head))  # untied here, so untied there
        if self.routing_shared is not None and plain.routing_shared is not None:
            for name, module in plain.routing_shared.items():
                module.load_state_dict(self.routing_shared[name].state_dict())
        return plain

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> torch.Tensor:
        """Random token ids ``(batch_size, seq_len or context)`` (fixed seed) on the net's device."""
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, self.vocab_size, (batch_size, seq_len or self.context), generator=g)
        return ids.to(self._device())
