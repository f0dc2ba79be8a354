"""Standalone subnets: ordinary torch layers only, rebuilt from a JSON ``dims`` dict.

``net.extract(arch)`` returns one of these with the active weights copied in;
``archlab.supernets.export`` saves/loads them without the supernet. Each class takes
``(dims, arch=None)``; ``subnet_config()`` gives ``{"family", "arch", "dims"}``.
``PLAIN`` maps family name to class.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError

from .attention import PlainSelfAttention
from .layers import make_activation
from .moe import PlainMoEFFN
from .moe_space import MOE_EXPERTS, MOE_TOP_K, layer_settings
from .routers import ROUTERS, RoutingState


class PlainSubnet(nn.Module):
    """Base: keeps ``family``, ``dims`` (JSON) and ``arch`` (JSON-able dict or None)."""

    family: ClassVar[str] = ""

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.arch = dict(arch) if arch is not None else None

    def _get(self, key: str) -> Any:
        if key not in self.dims:
            raise ArchlabError(f"subnet config for {self.family!r}: dims has no {key!r}")
        return self.dims[key]

    def subnet_config(self) -> dict[str, Any]:
        return {"family": self.family, "arch": self.arch, "dims": self.dims}


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


class PlainTransformerLM(PlainSubnet):
    """Decoder-only LM: token + position embedding, pre-LN blocks, final LN, (tied) head.

    ``dims["layers"][i]`` has ``n_head`` and ``ffn``, and for a token-routed MoE FFN also
    ``moe_experts`` (>= 2) and ``moe_top_k`` (1..moe_experts, the top-k that runs).
    """

    family = "transformer_lm"

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
        losses = [b.moe.aux_loss for b in self.blocks if b.moe is not None and b.moe.aux_loss is not None]
        return torch.stack(losses).sum() if losses else torch.zeros((), device=self.positions.device)


class PlainInvertedResidual(nn.Module):
    """MobileNet block: 1x1 expand, BN, act, depthwise kxk, BN, act, 1x1 project, BN (+ x)."""

    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int, activation: str) -> None:
        super().__init__()
        self.expand = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.depthwise = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.project = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.act = make_activation(activation)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.expand(x)))
        y = self.act(self.bn2(self.depthwise(y)))
        y = self.bn3(self.project(y))
        return x + y if self.residual else y


class PlainConvNet(PlainSubnet):
    """Stem conv, inverted-residual blocks, 1x1 head conv, global average pool, classifier."""

    family = "convnet"

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__(dims, arch)
        act = self.dims.get("activation", "hardswish")
        stem, head = int(self._get("stem_channels")), int(self._get("head_channels"))
        self.stem = nn.Conv2d(int(self._get("in_channels")), stem, 3, int(self._get("stem_stride")), 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        self.act = make_activation(act)
        self.blocks = nn.ModuleList(
            PlainInvertedResidual(int(b["in"]), int(b["mid"]), int(b["out"]), int(b["kernel"]), int(b["stride"]), act)
            for b in self._get("blocks")
        )
        last = int(self.dims["blocks"][-1]["out"]) if self.dims["blocks"] else stem
        self.head = nn.Conv2d(last, head, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(head)
        self.classifier = nn.Linear(head, int(self._get("num_classes")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        x = self.act(self.head_bn(self.head(x)))
        return self.classifier(x.mean((2, 3)))


class PlainMLP(PlainSubnet):
    """Linear + activation per hidden layer, then a linear classifier."""

    family = "mlp"

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__(dims, arch)
        sizes = [int(self._get("in_features")), *(int(w) for w in self._get("widths"))]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = make_activation(self.dims.get("activation", "relu"))
        self.classifier = nn.Linear(sizes[-1], int(self._get("num_classes")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.classifier(x)


PLAIN: dict[str, type[PlainSubnet]] = {
    "transformer_lm": PlainTransformerLM,
    "convnet": PlainConvNet,
    "mlp": PlainMLP,
}


def register_plain(cls: type[PlainSubnet]) -> type[PlainSubnet]:
    """Class decorator: make a user's plain subnet class loadable by ``load_subnet``."""
    PLAIN[cls.family] = cls
    return cls


def build_plain(family: str, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> PlainSubnet:
    """An untrained plain subnet of ``family`` with ``dims``."""
    cls = PLAIN.get(family)
    if cls is None:
        raise ArchlabError(f"family: unknown {family!r}; allowed: {', '.join(PLAIN)}")
    try:
        return cls(dims, arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchlabError(f"subnet config for {family!r}: bad dims ({exc})") from None


__all__ = [
    "PLAIN",
    "PlainConvNet",
    "PlainInvertedResidual",
    "PlainMLP",
    "PlainSubnet",
    "PlainTransformerLM",
    "build_plain",
    "register_plain",
]
