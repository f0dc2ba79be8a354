"""Token-routed mixture-of-experts FFN (MoE): elastic in the supernet, plain after extraction.

Not to be confused with ``archlab.supernets.layers.mos`` (mixture of *supernets*: a router maps the
*architecture* to weights). Here a router maps each *token* to a few expert FFNs.

Search-space names (per layer, in a transformer's ``layers`` block; all optional):

- ``moe_experts``: number of active experts E (integers >= 1). ``1`` is a dense FFN: expert 0
  runs on every token and no router runs, exactly an ordinary FFN.
- ``moe_top_k``: experts each token goes to (integers >= 1; default 1 when the space has
  ``moe_experts`` only). Policy: the active top-k is *clipped* to the active expert count,
  ``min(moe_top_k, moe_experts)``, so every architecture of the space is valid (a search may
  evaluate any of them). A ``moe_top_k`` value larger than the space's largest
  ``moe_experts`` could never be used and is an error naming ``layers[i].moe_top_k``.
- ``moe_router``: the router family, a name registered in ``archlab.supernets.routers``
  (``topk`` when absent). All families of a space share the gate ``router`` and the experts.
- ``moe_top_p`` (``top_p``), ``moe_capacity`` (capacity factor > 0; absent: no limit) and
  ``moe_null`` (``null_experts``' zero-compute experts): read by the routers that use them.

Routing: the layer asks its router (``archlab.supernets.routers``) for a ``Dispatch`` and runs
it; the default ``topk`` router is today's rule, bit for bit. ``route`` (below) is that rule: the router is a bias-free linear map ``d_model -> E`` (sliced to the
active ``d_model`` and the first E experts); ``probs = softmax(logits)`` over the E active
experts (float32), the top k are kept and renormalised to sum to 1 (with k = 1 the gate is
therefore 1 and the router learns from the load-balancing loss alone). Each expert is an
``ffn_in -> activation -> ffn_out`` pair of elastic linears with the layer's FFN width; expert
``e`` always owns the same weights, whatever E, and its FFN width is sliced like a dense FFN.

Load balancing (Switch Transformer): ``aux = E * sum_i f_i * P_i`` with ``f_i`` the fraction
of routing assignments (token, slot) that went to expert ``i`` (so ``sum_i f_i = 1``) and
``P_i`` the mean router probability of expert ``i`` over the tokens; 1.0 when perfectly
balanced, E when every token picks one expert with certainty. Only ``P`` carries gradient.
``ElasticMoEFFN`` and ``PlainMoEFFN`` record it as ``.aux_loss`` on every forward (``None``
for a dense layer); ``TransformerLM.aux_loss()`` sums them and the trainer adds
``TrainConfig.moe_aux_coef`` times that sum to each subnet's loss.

Dispatch (``run_dispatch``): one stable sort of the (token, expert, weight) assignments by
expert, one host sync for the per-expert counts, one ``index_select`` of the tokens in that
order, each expert run on its contiguous chunk only, and one ``index_add_`` of the gated
outputs back (in expert order, as a loop over experts would add them). No Python loop over
tokens. Each forward keeps a detached ``RoutingRecord`` (``last_routing``) for the
routing metrics of ``archlab.supernets.layers.routing_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from archlab.core.errors import ArchlabError

from ..routers import (
    DEFAULT_ROUTER,
    Dispatch,
    Router,
    RouteSettings,
    RoutingState,
    router_class,
    switch_load_balancing,
)
from ..routers.base import token_major
from ..routers.topk import topk_gates
from .banks import BankFactory
from .elastic import ElasticLinear, _check, make_activation
from .moe_space import (
    DEFAULT_TOP_K,
    MOE_EXPERTS,
    MOE_PARAMS,
    MOE_TOP_K,
    active_top_k,
    find_moe_params,
    moe_limits,
    reject_moe_params,
)


# routing ------------------------------------------------------------------------------
def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k routing of ``logits`` (N tokens, E experts): ``(probs (N, E) float32, gates (N, k),
    experts (N, k))``; k >= 2 renormalises the kept probabilities (Mixtral), k = 1 keeps the
    probability as the gate (Switch), so the task loss trains the router (see ``routers.topk``)."""
    return topk_gates(logits, top_k)


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer auxiliary loss ``E * sum_i f_i * P_i`` (a scalar, float32).

    ``probs`` (N, E): router probabilities; ``experts`` (N, k): the chosen experts. ``f_i``:
    share of the N*k assignments that went to expert ``i``; ``P_i``: mean of ``probs[:, i]``.
    """
    return switch_load_balancing(probs, experts)


def run_dispatch(
    x: torch.Tensor, tokens: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor,
    fns: Sequence[Callable[[torch.Tensor], torch.Tensor]], out_features: int,
) -> torch.Tensor:
    """``y[t] = sum_{a: tokens[a] = t} weights[a] * fns[experts[a]](x[t])`` for tokens ``x`` (N, d).

    Each expert function sees only its tokens (one batched call per expert); tokens without
    an assignment get zeros.
    """
    order = torch.argsort(experts, stable=True)
    counts = torch.bincount(experts, minlength=len(fns)).tolist()  # the one host sync
    tokens_sorted = tokens[order]
    xs = x.index_select(0, tokens_sorted).split(counts)  # one gather; a contiguous chunk per expert
    outs = [fns[e](chunk) for e, chunk in enumerate(xs) if counts[e]]
    y = x.new_zeros(x.shape[0], out_features)
    if outs:
        out = (torch.cat(outs) if len(outs) > 1 else outs[0]) * weights[order][:, None]
        y.index_add_(0, tokens_sorted, out.to(y.dtype))  # one scatter back, in expert order
    return y


def dispatch(
    x: torch.Tensor, gates: torch.Tensor, experts: torch.Tensor,
    fns: Sequence[Callable[[torch.Tensor], torch.Tensor]], out_features: int,
) -> torch.Tensor:
    """``y[t] = sum_j gates[t, j] * fns[experts[t, j]](x[t])`` for (N, k) ``gates``/``experts``."""
    tokens, e, w = token_major(gates, experts)
    return run_dispatch(x, tokens, e, w, fns, out_features)


@dataclass
class RoutingRecord:
    """A detached summary of one layer's last dispatch (for ``routing_metrics``)."""

    router: str
    dispatch: Dispatch


def _record(name: str, d: Dispatch) -> RoutingRecord:
    def det(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.detach()

    kept = Dispatch(d.tokens.detach(), d.experts.detach(), d.weights.detach(), d.n_tokens, d.n_experts,
                    det(d.probs), det(d.dropped), det(d.null_slots), {k: v.detach() for k, v in d.aux.items()},
                    dict(d.aux_weights))
    return RoutingRecord(name, kept)


class _RoutedFFN(nn.Module):
    """What the elastic and plain MoE FFNs share: the routing state, the forward and the record."""

    routing_state: RoutingState
    owns_state: bool
    rules: Any

    def _setup_state(self, names: Sequence[str], options: Mapping[str, Mapping[str, Any]], state: RoutingState | None) -> None:
        self.owns_state = state is None
        if state is None:
            shared: dict[str, nn.Module] = {}
            for name in names:
                shared.update(router_class(name).shared_modules(options.get(name, {})))
            self.shared = nn.ModuleDict(shared) if shared else None
            state = RoutingState(shared)
        self.routing_state = state
        self.aux_loss: torch.Tensor | None = None
        self.last_routing: RoutingRecord | None = None

    def rule_options(self) -> dict[str, Any]:
        """The options of the router family that routed last (``{}`` when none)."""
        rules = getattr(self, "rules", None)
        rule = rules[self.router_name] if rules is not None and self.router_name in rules else getattr(self, "rule", None)
        return dict(rule.options) if rule is not None else {}

    def _routed(self, x: torch.Tensor, rule: Router, name: str, settings: RouteSettings, gate: Any,
                fns: Sequence[Callable[[torch.Tensor], torch.Tensor]], out_features: int) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if self.owns_state:
            self.routing_state.reset()
        d = rule.route(flat, gate, settings, self.routing_state)
        self.aux_loss = d.aux_loss()
        self.last_routing = _record(name, d)
        y = run_dispatch(flat, d.tokens, d.experts, d.weights, fns, out_features)
        return y.reshape(*shape[:-1], out_features)


# elastic ------------------------------------------------------------------------------
class ElasticExpert(nn.Module):
    """One expert FFN: ``ffn_out(act(ffn_in(x)))`` with elastic ``d_model`` and FFN width."""

    def __init__(self, d_max: int, ffn_max: int, activation: str, factory: BankFactory | None) -> None:
        super().__init__()
        self.ffn_in = ElasticLinear(d_max, ffn_max, True, factory, role="ffn_in")
        self.act = make_activation(activation)
        self.ffn_out = ElasticLinear(ffn_max, d_max, True, factory, role="ffn_out")

    def set_active(self, d_model: int, ffn: int) -> None:
        self.ffn_in.set_active(d_model, ffn)
        self.ffn_out.set_active(ffn, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_out(self.act(self.ffn_in(x)))


class ElasticMoEFFN(_RoutedFFN):
    """Token-routed MoE FFN over up to ``experts_max`` experts (see the module docstring).

    ``set_active(d_model, ffn, experts, top_k, router, top_p, capacity, null)`` picks the
    sub-network; ``forward`` maps (..., d_model) to (..., d_model) and records ``aux_loss``
    (``None`` when dense) and ``last_routing``. Parameters: ``experts[e].ffn_in`` /
    ``experts[e].ffn_out`` (roles ``ffn_in``/``ffn_out``, so mixture-of-supernets banks plug
    in as for a dense FFN), ``router`` (the gate shared by every router family, role
    ``moe_router``; absent when ``experts_max`` is 1) and ``rules[name]`` (each family's own
    parameters, if any). ``routers``: the families the space may choose; ``null_max``: the
    most null experts; ``router_options``: ``{family: {option: value}}``; ``state``: the
    network's ``RoutingState`` (a private one when ``None``).
    """

    def __init__(
        self, d_max: int, ffn_max: int, experts_max: int, activation: str = "gelu",
        factory: BankFactory | None = None, routers: Sequence[str] = (DEFAULT_ROUTER,), null_max: int = 0,
        router_options: Mapping[str, Mapping[str, Any]] | None = None, state: RoutingState | None = None,
        layer_index: int = 0,
    ) -> None:
        super().__init__()
        self.d_max, self.ffn_max = int(d_max), int(ffn_max)
        self.experts_max = _check(MOE_EXPERTS, experts_max, 1, 1 << 16)
        self.experts = nn.ModuleList(
            ElasticExpert(self.d_max, self.ffn_max, activation, factory) for _ in range(self.experts_max)
        )
        self.router = (
            ElasticLinear(self.d_max, self.experts_max, False, factory, role="moe_router")
            if self.experts_max > 1 else None
        )
        options = dict(router_options or {})
        names = list(dict.fromkeys(routers)) if self.experts_max > 1 else []
        self.rules = nn.ModuleDict({
            n: router_class(n)(self.d_max, self.experts_max, int(null_max), factory, False, options.get(n), layer_index)
            for n in names
        })
        self.layer_index = int(layer_index)
        self.where = f"layers[{self.layer_index}]"
        self._setup_state(names, options, state)
        self.set_active(self.d_max, self.ffn_max, self.experts_max, DEFAULT_TOP_K, names[0] if names else DEFAULT_ROUTER)

    def set_active(self, d_model: int, ffn: int, experts: int, top_k: int, router: str = DEFAULT_ROUTER,
                   top_p: float = 1.0, capacity: float | None = None, null: int = 0) -> None:
        """Active width, FFN size, expert count (1: dense), top-k (clipped to ``experts``), and
        the router family with its settings (see ``RouteSettings``)."""
        self.d_model = _check("d_model", d_model, 1, self.d_max)
        self.ffn = _check("ffn", ffn, 1, self.ffn_max)
        self.n_experts = _check(MOE_EXPERTS, experts, 1, self.experts_max)
        self.top_k = active_top_k(self.n_experts, _check(MOE_TOP_K, top_k, 1, 1 << 16))
        for expert in cast("list[ElasticExpert]", self.experts[: self.n_experts]):  # ModuleList: untyped items
            expert.set_active(self.d_model, self.ffn)
        self.router_name = router
        self.settings = RouteSettings(self.n_experts, self.top_k, top_p, capacity, null).check(self.where)
        if self.n_experts > 1:
            if router not in self.rules:
                raise ArchlabError(f"{self.where}.moe_router: {router!r} is not one of this layer's routers; allowed: {', '.join(self.rules)}")
            assert self.router is not None
            self.router.set_active(self.d_model, self.n_experts)
            self.rules[router].set_active(self.d_model, self.settings)
        self.aux_loss = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_experts == 1 or self.router is None:
            self.aux_loss = None
            self.last_routing = None
            return self.experts[0](x)
        fns = list(self.experts[: self.n_experts])
        return self._routed(x, self.rules[self.router_name], self.router_name, self.settings, self.router, fns, self.d_model)

    def to_plain(self, activation: str = "gelu", where: str = "layers[i]", state: RoutingState | None = None) -> PlainMoEFFN:
        """A ``PlainMoEFFN`` of the active shape and router, with the active weights."""
        s = self.settings
        plain = PlainMoEFFN(self.d_model, self.ffn, self.n_experts, s.top_k, activation, where, self.router_name,
                            s.top_p, s.capacity, s.null, self.rules[self.router_name].options, state,
                            self.rules[self.router_name].layer_index)
        p = next(self.parameters())
        return self.copy_to(plain.to(device=p.device, dtype=p.dtype))

    @torch.no_grad()
    def copy_to(self, plain: PlainMoEFFN) -> PlainMoEFFN:
        """Fill a ``PlainMoEFFN`` of the active shape with the active weights."""
        experts = cast("list[ElasticExpert]", self.experts[: self.n_experts])  # ModuleList: untyped items
        for src, dst in zip(experts, cast("list[PlainExpert]", plain.experts)):
            src.ffn_in.copy_to(dst.ffn_in)
            src.ffn_out.copy_to(dst.ffn_out)
        if plain.router is not None and self.router is not None:
            self.router.copy_to(plain.router)
            self.rules[self.router_name].copy_to(plain.rule)
        return plain

    def extra_repr(self) -> str:
        return (f"experts={self.n_experts}/{self.experts_max}, top_k={self.top_k}, ffn={self.ffn}/{self.ffn_max}, "
                f"router={self.router_name}")


# plain --------------------------------------------------------------------------------
class PlainExpert(nn.Module):
    """One expert FFN on ordinary ``nn.Linear`` layers."""

    def __init__(self, d_model: int, ffn: int, activation: str) -> None:
        super().__init__()
        self.ffn_in = nn.Linear(d_model, ffn)
        self.act = make_activation(activation)
        self.ffn_out = nn.Linear(ffn, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_out(self.act(self.ffn_in(x)))


class PlainMoEFFN(_RoutedFFN):
    """Token-routed MoE FFN on ordinary layers: ``experts`` (>= 2) ``PlainExpert`` s, a
    bias-free ``nn.Linear`` gate ``router`` (``d_model -> experts``) and the router family
    ``router`` (``rule``: its own parameters) with its settings; records ``aux_loss`` and
    ``last_routing`` on every forward. ``where`` names the layer in errors."""

    def __init__(self, d_model: int, ffn: int, experts: int, top_k: int, activation: str = "gelu",
                 where: str = "layers[i]", router: str = DEFAULT_ROUTER, top_p: float = 1.0,
                 capacity: float | None = None, null: int = 0, options: Mapping[str, Any] | None = None,
                 state: RoutingState | None = None, layer_index: int = 0) -> None:
        super().__init__()
        if isinstance(experts, bool) or not isinstance(experts, int) or experts < 2:
            raise ArchlabError(f"{where}.{MOE_EXPERTS}: {experts!r}; a routed layer needs an integer >= 2")
        cls = router_class(router, f"{where}.moe_router")
        self.settings = RouteSettings(experts, top_k, top_p, capacity, null).check(where)
        self.d_model, self.n_experts, self.top_k, self.router_name = int(d_model), experts, top_k, router
        self.experts = nn.ModuleList(PlainExpert(d_model, ffn, activation) for _ in range(experts))
        self.router = nn.Linear(d_model, experts, bias=False)
        self.rule = cls(d_model, experts, int(null), None, True, options, layer_index)
        self.layer_index = int(layer_index)
        self.rule.set_active(d_model, self.settings)
        self._setup_state([router], {router: dict(options or {})}, state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._routed(x, self.rule, self.router_name, self.settings, self.router, list(self.experts), self.d_model)


__all__ = [
    "DEFAULT_TOP_K",
    "MOE_EXPERTS",
    "MOE_PARAMS",
    "MOE_TOP_K",
    "ElasticExpert",
    "ElasticMoEFFN",
    "PlainExpert",
    "PlainMoEFFN",
    "RoutingRecord",
    "active_top_k",
    "dispatch",
    "find_moe_params",
    "load_balancing_loss",
    "moe_limits",
    "reject_moe_params",
    "route",
    "run_dispatch",
]
