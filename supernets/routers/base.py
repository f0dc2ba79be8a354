"""Token routers: the interface, the dispatch they return, and the registry.

A router maps the token representations of one MoE layer to a ``Dispatch``: a flat list of
(token, expert, weight) assignments, the router probabilities (for metrics), which tokens
lost an assignment to a capacity limit, and its auxiliary losses by name. The MoE layer
(``archlab.supernets.layers.moe``) runs whatever the router returns, one batched call per expert.

Adding a router is one module: subclass ``Router``, decorate with ``@register_router("name")``
and implement ``route``. Routers get the layer's shared gate (a bias-free linear
``d_model -> experts``), may own extra parameters (made with ``Router.linear`` so the same
class serves the elastic supernet and the plain extracted module) and may read or write the
``RoutingState`` carried across the layers of one forward (``recurrent``) or across training
(``random_grow``: training progress).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError

from ..layers.banks import BankFactory
from ..layers.elastic import ElasticLinear

ROUTERS: dict[str, type[Router]] = {}
DEFAULT_ROUTER = "topk"


def register_router(name: str) -> Callable[[type[Router]], type[Router]]:
    """Class decorator: make a ``Router`` subclass available under ``name`` (``moe_router``)."""

    def deco(cls: type[Router]) -> type[Router]:
        if name in ROUTERS and ROUTERS[name] is not cls:
            raise ArchlabError(f"moe_router: {name!r} is registered twice ({ROUTERS[name].__name__}, {cls.__name__})")
        cls.name = name
        ROUTERS[name] = cls
        return cls

    return deco


def router_class(name: Any, where: str = "moe_router") -> type[Router]:
    """The registered router class called ``name``; an ``ArchlabError`` naming ``where`` otherwise."""
    cls = ROUTERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ArchlabError(f"{where}: unknown router {name!r}; allowed: {', '.join(sorted(ROUTERS))}")
    return cls


@dataclass(frozen=True)
class RouteSettings:
    """The active routing choice of one layer: ``experts`` (real experts, >= 1), ``top_k``
    (experts per token for k-based routers), ``top_p`` (probability mass for ``top_p``, in
    (0, 1]), ``capacity`` (capacity factor > 0, or ``None``: no limit; ``expert_choice``
    defaults to 1.0) and ``null`` (zero-compute experts of ``null_experts``, >= 0)."""

    experts: int
    top_k: int = 1
    top_p: float = 1.0
    capacity: float | None = None
    null: int = 0

    def check(self, where: str = "layers[i]") -> RouteSettings:
        """Raise a one-line ``ArchlabError`` naming the bad field; return ``self``."""
        if isinstance(self.experts, bool) or not isinstance(self.experts, int) or self.experts < 1:
            raise ArchlabError(f"{where}.moe_experts: {self.experts!r}; allowed: integers >= 1")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or not 1 <= self.top_k <= self.experts:
            raise ArchlabError(f"{where}.moe_top_k: {self.top_k!r}; allowed: integers 1..{self.experts} (moe_experts={self.experts})")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < float(self.top_p) <= 1.0:
            raise ArchlabError(f"{where}.moe_top_p: {self.top_p!r}; allowed: a number in (0, 1]")
        if self.capacity is not None and (not isinstance(self.capacity, (int, float)) or not float(self.capacity) > 0
                                          or not math.isfinite(float(self.capacity))):
            raise ArchlabError(f"{where}.moe_capacity: {self.capacity!r}; allowed: a finite number > 0 (capacity factor)")
        if isinstance(self.null, bool) or not isinstance(self.null, int) or self.null < 0:
            raise ArchlabError(f"{where}.moe_null: {self.null!r}; allowed: integers >= 0")
        return self


@dataclass
class Dispatch:
    """What a router decided for ``n_tokens`` tokens and ``n_experts`` real experts.

    ``tokens``/``experts``/``weights`` (A,): assignment ``a`` sends token ``tokens[a]`` to
    expert ``experts[a]`` with gate ``weights[a]``; the layer output of a token is the
    weighted sum over its assignments (zero when it has none: it passes through the
    residual). ``probs`` (N, E') router probabilities (E' may include null experts; ``None``
    when the router has none); ``dropped`` (N,) bool: tokens that lost at least one
    assignment to a capacity limit; ``null_slots`` (N,): null experts each token chose;
    ``aux``: auxiliary losses by name (scalars, with gradient); ``aux_weights``: the weight of
    each in the layer's ``aux_loss`` (relative to ``TrainConfig.moe_aux_coef``).
    """

    tokens: torch.Tensor
    experts: torch.Tensor
    weights: torch.Tensor
    n_tokens: int
    n_experts: int
    probs: torch.Tensor | None = None
    dropped: torch.Tensor | None = None
    null_slots: torch.Tensor | None = None
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_weights: dict[str, float] = field(default_factory=dict)

    def aux_loss(self) -> torch.Tensor | None:
        """``sum_name aux_weights[name] * aux[name]`` (weight 1 when unlisted); ``None`` if empty."""
        terms = [self.aux_weights.get(k, 1.0) * v for k, v in self.aux.items() if self.aux_weights.get(k, 1.0)]
        if not terms:
            return None
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total


class RoutingState:
    """State shared by the MoE layers of one network: ``hidden`` (carried from layer to layer
    within one forward; reset by ``reset``), ``progress`` (training progress in [0, 1] or
    ``None``: unknown, read by schedules) and ``shared`` (modules shared across layers, such
    as the recurrent router's GRU; owned and registered by the network)."""

    def __init__(self, shared: Mapping[str, nn.Module] | None = None) -> None:
        self.shared: dict[str, nn.Module] = dict(shared or {})
        self.hidden: torch.Tensor | None = None
        self.progress: float | None = None

    def reset(self) -> None:
        self.hidden = None


class Router(nn.Module):
    """Base of token routers. ``route(x, gate, settings, state)`` -> ``Dispatch``.

    ``d_max``/``experts_max`` are the largest width and expert count (the active ones come
    with each call); ``factory`` is the supernet's bank factory, or ``None`` for a plain
    (extracted) router, whose extra linears are ordinary ``nn.Linear`` of the active shape.
    ``options``: router-specific settings (each class documents its own).
    """

    name: ClassVar[str] = ""
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, d_max: int, experts_max: int, null_max: int = 0, factory: BankFactory | None = None,
                 plain: bool = False, options: Mapping[str, Any] | None = None, layer_index: int = 0) -> None:
        super().__init__()
        self.d_max, self.experts_max, self.null_max = int(d_max), int(experts_max), int(null_max)
        self.factory, self.plain, self.layer_index = factory, bool(plain), int(layer_index)
        self.options = dict(options or {})
        unknown = sorted(set(self.options) - set(self.option_names))
        if unknown:
            raise ArchlabError(f"router_options[{self.name!r}]: unknown option {unknown[0]!r}; "
                               f"allowed: {', '.join(self.option_names) or 'none'}")

    # parameters ------------------------------------------------------------------------
    def linear(self, in_max: int, out_max: int, bias: bool = False) -> nn.Module:
        """An ``ElasticLinear`` (supernet, role ``moe_router``) or an ``nn.Linear`` (plain)."""
        if self.plain:
            return nn.Linear(in_max, out_max, bias=bias)
        return ElasticLinear(in_max, out_max, bias, self.factory, role="moe_router")

    @staticmethod
    def shared_modules(options: Mapping[str, Any]) -> dict[str, nn.Module]:
        """Modules this router shares across the layers of a network (none by default)."""
        return {}

    def set_active(self, d_model: int, settings: RouteSettings) -> None:
        """Fix the active width and settings (elastic linears sliced here)."""
        self.d_model = int(d_model)

    @torch.no_grad()
    def copy_to(self, plain: Router) -> Router:
        """Copy the active weights of this (elastic) router into ``plain`` (same class)."""
        mods = dict(plain.named_modules())
        for name, m in self.named_modules():
            if isinstance(m, ElasticLinear) and name in mods:
                m.copy_to(mods[name])
        return plain

    # routing ---------------------------------------------------------------------------
    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:  # pragma: no cover - every router overrides it
        raise NotImplementedError


# shared rules ------------------------------------------------------------------------------
def switch_load_balancing(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer loss ``E * sum_i f_i * P_i`` (float32 scalar): ``f_i`` share of the
    assignments in ``experts`` (any shape) that went to expert ``i``, ``P_i`` mean of
    ``probs[:, i]`` (N, E). 1.0 when balanced, E when collapsed onto one expert."""
    n_experts = probs.shape[-1]
    counts = torch.bincount(experts.reshape(-1), minlength=n_experts).to(probs.dtype)
    fraction = counts / max(experts.numel(), 1)
    return n_experts * (fraction * probs.mean(0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss ``mean_t (logsumexp_i logits[t, i])^2`` (float32 scalar)."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of ``-sum_i p_i log p_i`` (nats; 0 log 0 = 0)."""
    return -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()


def token_major(gates: torch.Tensor, experts: torch.Tensor, keep: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten (N, k) ``gates``/``experts`` to token-major assignment lists (optionally only
    where ``keep`` (N, k) is true)."""
    n, k = experts.shape
    tokens = torch.arange(n, device=experts.device).repeat_interleave(k)
    e, w = experts.reshape(-1), gates.reshape(-1)
    if keep is not None:
        mask = keep.reshape(-1)
        tokens, e, w = tokens[mask], e[mask], w[mask]
    return tokens, e, w


def capacity_keep(experts: torch.Tensor, n_experts: int, capacity: float | None) -> tuple[torch.Tensor | None, int | None]:
    """Which (N, k) assignments fit an expert capacity of ``ceil(capacity * N * k / E)`` tokens.

    Priority as in GShard / ST-MoE: every token's first choice before any second choice,
    tokens in order within a slot. Entries ``>= n_experts`` (null experts) have no capacity
    and are always kept. Returns ``(keep (N, k) bool or None, capacity in tokens)``.
    """
    if capacity is None:
        return None, None
    n, k = experts.shape
    cap = max(1, math.ceil(float(capacity) * n * k / n_experts))
    slot_major = experts.t().reshape(-1).clamp_max(n_experts)
    onehot = F.one_hot(slot_major, n_experts + 1)[:, :n_experts]  # (k*N, E); nulls: all zero
    position = (onehot.cumsum(0) * onehot).sum(-1) - 1  # rank within its expert; -1 for nulls
    keep = (position < cap).reshape(k, n).t()
    return keep, cap


def apply_capacity(gates: torch.Tensor, experts: torch.Tensor, n_experts: int, capacity: float | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Token-major assignments of (N, k) ``gates``/``experts`` after the capacity limit, and the
    (N,) mask of tokens that lost an assignment (``None`` without a limit)."""
    keep, _ = capacity_keep(experts, n_experts, capacity)
    tokens, e, w = token_major(gates, experts, keep)
    dropped = None if keep is None else ~keep.all(-1)
    return tokens, e, w, dropped


__all__ = [
    "DEFAULT_ROUTER",
    "ROUTERS",
    "Dispatch",
    "RouteSettings",
    "Router",
    "RoutingState",
    "apply_capacity",
    "capacity_keep",
    "mean_entropy",
    "register_router",
    "router_class",
    "router_z_loss",
    "switch_load_balancing",
    "token_major",
]
