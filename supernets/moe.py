"""Token-routed mixture-of-experts FFN (MoE): elastic in the supernet, plain after extraction.

Not to be confused with ``archlab.supernets.mos`` (mixture of *supernets*: a router maps the
*architecture* to weights). Here a router maps each *token* to a few expert FFNs.

Search-space names (per layer, in a transformer's ``layers`` block; both optional):

- ``moe_experts``: number of active experts E (integers >= 1). ``1`` is a dense FFN: expert 0
  runs on every token and no router runs, exactly an ordinary FFN.
- ``moe_top_k``: experts each token goes to (integers >= 1; default 1 when the space has
  ``moe_experts`` only). Policy: the active top-k is *clipped* to the active expert count,
  ``min(moe_top_k, moe_experts)``, so every architecture of the space is valid (a search may
  evaluate any of them). A ``moe_top_k`` value larger than the space's largest
  ``moe_experts`` could never be used and is an error naming ``layers[i].moe_top_k``.

Routing (``route``): the router is a bias-free linear map ``d_model -> E`` (sliced to the
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

Dispatch (``dispatch``): one sort of the (token, slot) assignments by expert, one host sync
for the per-expert counts, then per active expert ``index_select`` its tokens, run the expert
on them only and ``index_add_`` the gated outputs back. No Python loop over tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.spaces import PerLayer, SearchSpace
from archlab.spaces.errors import ArchlabError, SpaceError

from .banks import BankFactory
from .layers import ElasticLinear, _check, make_activation

MOE_EXPERTS = "moe_experts"
MOE_TOP_K = "moe_top_k"
MOE_PARAMS = (MOE_EXPERTS, MOE_TOP_K)
DEFAULT_TOP_K = 1


# routing ------------------------------------------------------------------------------
def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k routing of ``logits`` (N tokens, E experts).

    Returns ``(probs (N, E) float32, gates (N, k) float32, experts (N, k) long)``: softmax
    over the E experts and the k most probable kept. With k >= 2 the kept probabilities are
    renormalised to sum to 1 (as in Mixtral); with k = 1 the gate is the probability itself
    (as in Switch Transformer), so the router learns from the task loss and not only from the
    load-balancing loss (a renormalised top-1 gate is always 1 and carries no gradient).
    """
    n_experts = logits.shape[-1]
    if not 1 <= top_k <= n_experts:
        raise ArchlabError(f"moe_top_k: {top_k} with {n_experts} experts; allowed: 1..{n_experts}")
    probs = F.softmax(logits.float(), dim=-1)
    top, experts = probs.topk(top_k, dim=-1)
    gates = top if top_k == 1 else top / top.sum(-1, keepdim=True)
    return probs, gates, experts


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer auxiliary loss ``E * sum_i f_i * P_i`` (a scalar, float32).

    ``probs`` (N, E): router probabilities; ``experts`` (N, k): the chosen experts. ``f_i``:
    share of the N*k assignments that went to expert ``i``; ``P_i``: mean of ``probs[:, i]``.
    """
    n_experts = probs.shape[-1]
    counts = torch.bincount(experts.reshape(-1), minlength=n_experts).to(probs.dtype)
    fraction = counts / max(experts.numel(), 1)
    return n_experts * (fraction * probs.mean(0)).sum()


def dispatch(
    x: torch.Tensor,
    gates: torch.Tensor,
    experts: torch.Tensor,
    fns: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    out_features: int,
) -> torch.Tensor:
    """``y[t] = sum_j gates[t, j] * fns[experts[t, j]](x[t])`` for tokens ``x`` (N, d).

    Each expert function sees only the tokens routed to it (one batched call per expert).
    """
    n, k = experts.shape
    flat = experts.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=len(fns)).tolist()  # the one host sync
    tokens_sorted = order // k
    gates_sorted = gates.reshape(-1)[order]
    y = x.new_zeros(n, out_features)
    start = 0
    for e, count in enumerate(counts):
        if count == 0:
            continue
        idx = tokens_sorted[start:start + count]
        out = fns[e](x.index_select(0, idx)) * gates_sorted[start:start + count, None]
        y.index_add_(0, idx, out.to(y.dtype))
        start += count
    return y


def _moe_forward(
    module: nn.Module, x: torch.Tensor, router: Callable[[torch.Tensor], torch.Tensor],
    fns: Sequence[Callable[[torch.Tensor], torch.Tensor]], top_k: int, out_features: int,
) -> torch.Tensor:
    """Route the tokens of ``x`` (..., d), dispatch to ``fns``, record ``module.aux_loss``."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    probs, gates, experts = route(router(flat), top_k)
    module.aux_loss = load_balancing_loss(probs, experts)
    return dispatch(flat, gates, experts, fns, out_features).reshape(*shape[:-1], out_features)


# the space's MoE parameters -----------------------------------------------------------
def find_moe_params(space: SearchSpace) -> list[str]:
    """Paths (``layers[i].moe_top_k``) of every ``moe_*`` parameter anywhere in ``space``."""
    found: list[str] = []

    def walk(block: Mapping[str, Any], prefix: str) -> None:
        for name, p in block.items():
            if isinstance(p, PerLayer):
                walk(p.params, f"{prefix}{name}[i].")
            elif name.startswith("moe_"):
                found.append(prefix + name)

    walk(space.params, "")
    return found


def reject_moe_params(space: SearchSpace, family: str) -> None:
    """Raise ``ArchlabError`` when ``space`` has ``moe_*`` parameters (``family`` lacks MoE)."""
    found = find_moe_params(space)
    if found:
        raise ArchlabError(
            f"{family}: search space {space.name!r} has the mixture-of-experts parameter {found[0]!r}, "
            "which this family does not support; MoE layers are available in: transformer_lm "
            f"(layers[i].{MOE_EXPERTS}, layers[i].{MOE_TOP_K})"
        )


def _int_values(param: Any, where: str, low: int) -> list[int]:
    try:
        values = list(param.values())
    except SpaceError:  # a continuous range has no value list
        values = []
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
        raise ArchlabError(f"{where}: allowed values are {param.allowed()}; must be integers >= {low}")
    return values


def moe_limits(space: SearchSpace, family: str, block: str = "layers") -> tuple[int, int]:
    """``(largest moe_experts, largest moe_top_k)`` of ``space``'s ``block``; ``(0, 0)`` when
    the space has no MoE parameters. Raises ``ArchlabError`` naming the field for ``moe_*``
    names outside ``block``, non-integer values, ``moe_top_k`` without ``moe_experts`` and
    ``moe_top_k`` values above the largest ``moe_experts``."""
    allowed = {f"{block}[i].{n}" for n in MOE_PARAMS}
    for path in find_moe_params(space):
        if path not in allowed:
            raise ArchlabError(
                f"{family}: parameter {path!r} is not a known MoE setting; allowed: {', '.join(sorted(allowed))}"
            )
    layer = space.params[block].params  # type: ignore[attr-defined]
    if MOE_EXPERTS not in layer:
        if MOE_TOP_K in layer:
            raise ArchlabError(
                f"{block}[i].{MOE_TOP_K}: needs {block}[i].{MOE_EXPERTS} in the same block (the number of experts)"
            )
        return 0, 0
    experts_max = max(_int_values(layer[MOE_EXPERTS], f"{block}[i].{MOE_EXPERTS}", 1))
    if MOE_TOP_K not in layer:
        return experts_max, DEFAULT_TOP_K
    top_ks = _int_values(layer[MOE_TOP_K], f"{block}[i].{MOE_TOP_K}", 1)
    if max(top_ks) > experts_max:
        raise ArchlabError(
            f"{block}[i].{MOE_TOP_K}: value {max(top_ks)} exceeds the largest {block}[i].{MOE_EXPERTS} "
            f"({experts_max}) and could never be active; allowed: integers 1..{experts_max} "
            "(a top-k above an architecture's own expert count is clipped to it)"
        )
    return experts_max, max(top_ks)


def active_top_k(experts: int, top_k: int) -> int:
    """The top-k that runs: ``min(top_k, experts)`` (the clipping policy)."""
    return max(1, min(int(top_k), int(experts)))


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


class ElasticMoEFFN(nn.Module):
    """Token-routed MoE FFN over up to ``experts_max`` experts (see the module docstring).

    ``set_active(d_model, ffn, experts, top_k)`` picks the sub-network; ``forward`` maps
    (..., d_model) to (..., d_model) and records ``aux_loss`` (``None`` when dense).
    Parameters: ``experts[e].ffn_in`` / ``experts[e].ffn_out`` (roles ``ffn_in``/``ffn_out``,
    so mixture-of-supernets banks plug in as for a dense FFN) and ``router`` (role
    ``moe_router``; absent when ``experts_max`` is 1).
    """

    def __init__(
        self, d_max: int, ffn_max: int, experts_max: int, activation: str = "gelu",
        factory: BankFactory | None = None,
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
        self.aux_loss: torch.Tensor | None = None
        self.set_active(self.d_max, self.ffn_max, self.experts_max, DEFAULT_TOP_K)

    def set_active(self, d_model: int, ffn: int, experts: int, top_k: int) -> None:
        """Active width, FFN size, expert count (1: dense) and top-k (clipped to ``experts``)."""
        self.d_model = _check("d_model", d_model, 1, self.d_max)
        self.ffn = _check("ffn", ffn, 1, self.ffn_max)
        self.n_experts = _check(MOE_EXPERTS, experts, 1, self.experts_max)
        self.top_k = active_top_k(self.n_experts, _check(MOE_TOP_K, top_k, 1, 1 << 16))
        for expert in self.experts[: self.n_experts]:
            expert.set_active(self.d_model, self.ffn)
        if self.router is not None:
            self.router.set_active(self.d_model, self.n_experts)
        self.aux_loss = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_experts == 1 or self.router is None:
            self.aux_loss = None
            return self.experts[0](x)
        fns = list(self.experts[: self.n_experts])
        return _moe_forward(self, x, self.router, fns, self.top_k, self.d_model)

    @torch.no_grad()
    def copy_to(self, plain: PlainMoEFFN) -> PlainMoEFFN:
        """Fill a ``PlainMoEFFN`` of the active shape with the active weights."""
        for src, dst in zip(self.experts[: self.n_experts], plain.experts):
            src.ffn_in.copy_to(dst.ffn_in)
            src.ffn_out.copy_to(dst.ffn_out)
        if plain.router is not None and self.router is not None:
            self.router.copy_to(plain.router)
        return plain

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}/{self.experts_max}, top_k={self.top_k}, ffn={self.ffn}/{self.ffn_max}"


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


class PlainMoEFFN(nn.Module):
    """Token-routed MoE FFN on ordinary layers: ``experts`` (>= 2) ``PlainExpert`` s, a
    bias-free ``nn.Linear`` router ``d_model -> experts`` and top-``top_k`` routing; records
    ``aux_loss`` on every forward. ``where`` names the field in errors."""

    def __init__(self, d_model: int, ffn: int, experts: int, top_k: int, activation: str = "gelu",
                 where: str = "layers[i]") -> None:
        super().__init__()
        if isinstance(experts, bool) or not isinstance(experts, int) or experts < 2:
            raise ArchlabError(f"{where}.{MOE_EXPERTS}: {experts!r}; a routed layer needs an integer >= 2")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= experts:
            raise ArchlabError(f"{where}.{MOE_TOP_K}: {top_k!r}; allowed: integers 1..{experts} ({MOE_EXPERTS}={experts})")
        self.d_model, self.n_experts, self.top_k = int(d_model), experts, top_k
        self.experts = nn.ModuleList(PlainExpert(d_model, ffn, activation) for _ in range(experts))
        self.router = nn.Linear(d_model, experts, bias=False)
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _moe_forward(self, x, self.router, list(self.experts), self.top_k, self.d_model)


__all__ = [
    "DEFAULT_TOP_K",
    "MOE_EXPERTS",
    "MOE_PARAMS",
    "MOE_TOP_K",
    "ElasticExpert",
    "ElasticMoEFFN",
    "PlainExpert",
    "PlainMoEFFN",
    "active_top_k",
    "dispatch",
    "find_moe_params",
    "load_balancing_loss",
    "moe_limits",
    "reject_moe_params",
    "route",
]
