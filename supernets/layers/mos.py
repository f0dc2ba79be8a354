"""Mixture-of-supernets weight banks (Jawahar et al., ACL Findings 2024).

Subnets do not share one weight tensor directly: a router maps the architecture encoding to
mixing weights over ``m`` full-size expert tensors, so each architecture gets weights of its
own while the model stays one supernet.

- ``mos-layer`` (``LayerMixtureBank``): ``alpha = softmax(router(a))`` over the ``m``
  experts; ``weight = sum_i alpha_i * E_i[index]`` (slice each expert, then mix); the bias
  the same way.
- ``mos-neuron`` (``NeuronMixtureBank``): the router has one slot per maximum-width output
  neuron and expert; it is sliced to the active width and softmax-ed over the experts per
  neuron, then applied row-wise to the sliced experts.

``a`` is the space's normalised encoding (``space.encode(arch, normalized=True)``: each
feature scaled by the space's own value range), handed over by ``set_arch_encoding``. The
router runs once per forward of the layer on that one vector (it depends on the architecture,
not on the tokens). Mixing is one contraction over the stacked expert slices. With the
architecture set, ``bank(index)`` under ``torch.no_grad()`` is the dense weight of that
architecture, so extraction collapses the mixture without knowing about it.

Options (``sharing_options``): ``experts`` (m, default 2), ``router_hidden`` (128),
``router_layers`` (number of linear layers of the router, default 2), ``init``
(``"independent"``: each expert drawn with the layer's own initialiser; ``"same"``: one draw
copied to every expert, so the mixture starts as the entangled layer), ``router_scope``
(``"weight"``: one router per weight, the default; ``"ffn"``: one router per FFN, shared by
its two linears, as in the official Mixture-of-Supernets code: the ``ffn_out`` bank made
right after an ``ffn_in`` bank uses that bank's router. Layer-wise, both mix with the same
expert weights; neuron-wise, the router's slots are the FFN's hidden neurons: ``ffn_in``
mixes its output rows and ``ffn_out`` its input columns by them, and ``ffn_out``'s bias by
their mean over the active neurons. Layers outside an FFN pair keep their own router).

``mixing_log(net)`` gives, per mixture bank that owns a router, the active architecture's
mean expert weights and their entropy (nats; neuron-wise: the mean entropy over the active
neurons); the trainer adds it to every logged record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError

from .arch_router import ArchRouter
from .banks import Index, Init, WeightBank, register_bank


def _init_independent(experts: torch.Tensor, init: Init) -> None:
    for e in experts:
        init(e)


def _init_same(experts: torch.Tensor, init: Init) -> None:
    init(experts[0])
    experts[1:].copy_(experts[0].expand_as(experts[1:]))


# how the experts start: name -> fn(stacked expert tensor (m, ...), per-expert initialiser)
EXPERT_INITS: dict[str, Callable[[torch.Tensor, Init], None]] = {
    "independent": _init_independent,
    "same": _init_same,
}

OPTIONS = ("experts", "router_hidden", "router_layers", "init", "router_scope")
ROUTER_SCOPES = ("weight", "ffn")


class MixtureBank(WeightBank):
    """Common part of the mixture banks: stacked experts, a router, the encoding."""

    # layers that get a mixture when ``roles`` is not given (the others stay entangled): the
    # FFN linears of transformers, the expand/project convolutions of conv nets, and the
    # hidden linears of MLPs (role "linear": an MLP's hidden layers are its FFN)
    default_roles: ClassVar[tuple[str, ...]] = ("ffn_in", "ffn_out", "conv_expand", "conv_project", "linear")

    def __init__(
        self,
        weight_shape: Sequence[int],
        bias: bool,
        role: str,
        encoding_size: int = 0,
        experts: int = 2,
        router_hidden: int = 128,
        router_layers: int = 2,
        init: str = "independent",
        router_scope: str = "weight",
        **kwargs: Any,
    ) -> None:
        init_kwargs = {k: kwargs.pop(k) for k in ("weight_init", "bias_init") if k in kwargs}
        if kwargs:
            raise ArchlabError(
                f"sharing_options: unknown option {sorted(kwargs)[0]!r} for {self.sharing}; "
                f"allowed: {', '.join(OPTIONS)}"
            )
        super().__init__(weight_shape, bias, role, **init_kwargs)
        if isinstance(experts, bool) or not isinstance(experts, int) or experts < 1:
            raise ArchlabError(f"sharing_options.experts: {experts!r}; allowed: an integer >= 1")
        if init not in EXPERT_INITS:
            raise ArchlabError(f"sharing_options.init: {init!r}; allowed: {', '.join(EXPERT_INITS)}")
        if router_scope not in ROUTER_SCOPES:
            raise ArchlabError(f"sharing_options.router_scope: {router_scope!r}; allowed: {', '.join(ROUTER_SCOPES)}")
        self.router_scope = router_scope
        self._last_index: tuple[slice, ...] | None = None
        self.num_experts = experts
        self.init = init
        self.encoding_size = int(encoding_size)
        self.experts = nn.Parameter(torch.empty((experts, *self.weight_shape)))
        self.bias_experts = nn.Parameter(torch.empty(experts, self.weight_shape[0])) if bias else None
        self.router = ArchRouter(self.encoding_size, self._router_outputs(), router_hidden, router_layers)
        self._encoding: torch.Tensor | None = None
        self.reset_parameters()

    slice_lead: ClassVar[int] = 1  # the expert axis: every expert is sliced to the active box

    @property
    def owner(self) -> MixtureBank:
        """The bank whose router this one uses (itself unless it shares an FFN's router)."""
        return self.__dict__.get("_router_owner") or self

    def link_previous(self, previous: Any) -> None:
        """With ``router_scope="ffn"``, an ``ffn_out`` bank made right after an ``ffn_in``
        mixture bank of the same kind drops its own router and uses that one."""
        if (self.router_scope == "ffn" and self.role == "ffn_out" and type(previous) is type(self)
                and previous.role == "ffn_in" and previous.num_experts == self.num_experts):
            if self._router_outputs_shared(previous) != previous.router.out_features:
                return
            del self.router
            self.__dict__["_router_owner"] = previous  # not a submodule: its parameters live there

    def _router_outputs_shared(self, previous: MixtureBank) -> int:
        return previous.router.out_features

    def _logits(self) -> torch.Tensor:
        o = self.owner
        return o.router(o._router_input())

    def slice_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.experts, self.bias_experts

    def no_weight_decay(self) -> list[nn.Parameter]:
        """The router and the stacked expert biases: no weight decay (as for any bias)."""
        own = [self.bias_experts] if self.bias_experts is not None else []
        return own + list(self.owner.router.parameters())

    def _sliced(self, idx: tuple[slice, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``experts[:, *idx]`` and ``bias_experts[:, idx[0]]`` (from SliceAdamW's tracker
        while one trains this bank, so a step touches only that box)."""
        served = self._served(idx)
        if served is not None:
            return served
        b = self.bias_experts[:, idx[0]] if self.bias_experts is not None else None
        return self.experts[(slice(None), *idx)], b

    def _router_outputs(self) -> int:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Draw the experts (``init``) and their biases; the router keeps nn.Linear's init."""
        with torch.no_grad():
            EXPERT_INITS[self.init](self.experts.data, self.weight_init)
            if self.bias_experts is not None:
                EXPERT_INITS[self.init](self.bias_experts.data, self.bias_init)

    def set_arch_encoding(self, encoding: torch.Tensor | None) -> None:
        """Remember the normalised architecture encoding (a vector of ``encoding_size``)."""
        if encoding is None:
            self._encoding = None
            return
        enc = torch.as_tensor(encoding).reshape(-1)
        if enc.shape[0] != self.encoding_size:
            raise ArchlabError(
                f"{self.sharing}: architecture encoding has {enc.shape[0]} features; this bank's "
                f"router reads {self.encoding_size} (was the supernet built for another space?)"
            )
        self._encoding = enc

    def _router_input(self) -> torch.Tensor:
        enc = self._encoding
        if enc is None:
            raise ArchlabError(f"{self.sharing}: no architecture set; call net.set_arch(arch) before the forward")
        p = self.experts
        dtype = p.dtype if p.dtype.is_floating_point else torch.float32
        if enc.device != p.device or enc.dtype != dtype:
            enc = enc.to(device=p.device, dtype=dtype)
            if not enc.requires_grad:
                self._encoding = enc  # convert once per architecture, not once per forward
        return enc

    def mixing_weights(self, index: Index | None = None) -> torch.Tensor:
        """The router's expert weights for the active architecture (rows sum to 1).

        ``mos-layer``: shape ``(m,)``; ``mos-neuron``: ``(active out, m)`` for ``index``
        (default: the full width).
        """
        raise NotImplementedError


@register_bank("mos-layer")
class LayerMixtureBank(MixtureBank):
    """Layer-wise mixture: one softmax over the experts per layer."""

    def _router_outputs(self) -> int:
        return self.num_experts

    def mixing_weights(self, index: Index | None = None) -> torch.Tensor:
        return F.softmax(self._logits().float(), dim=-1)

    def forward(self, index: Index) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = tuple(index)
        sliced, b = self._sliced(idx)  # (m, *active shape), (m, active out)
        alpha = self.mixing_weights().to(sliced.dtype)  # (m,)
        weight = torch.einsum("e,e...->...", alpha, sliced)
        return weight, (alpha @ b if b is not None else None)


@register_bank("mos-neuron")
class NeuronMixtureBank(MixtureBank):
    """Neuron-wise mixture: one softmax over the experts per active output neuron."""

    def _router_outputs(self) -> int:
        return self.weight_shape[0] * self.num_experts

    def _router_outputs_shared(self, previous: MixtureBank) -> int:
        return self.weight_shape[1] * self.num_experts  # ffn_out's input columns = ffn_in's rows

    @property
    def _axis(self) -> int:
        """The weight dimension the neurons run along: 0 (rows), 1 for a shared FFN router."""
        return 1 if self.owner is not self else 0

    def mixing_weights(self, index: Index | None = None) -> torch.Tensor:
        axis = self._axis
        sel = index[axis] if index is not None else slice(None)
        logits = self._logits().view(self.weight_shape[axis], self.num_experts)[sel]
        return F.softmax(logits.float(), dim=-1)  # (active neurons, m)

    def forward(self, index: Index) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = tuple(index)
        self._last_index = idx
        sliced, b = self._sliced(idx)  # (m, out, *rest), (m, out)
        alpha = self.mixing_weights(idx).to(sliced.dtype)  # (neurons, m)
        if self._axis == 0:
            coef = alpha.t().reshape(alpha.shape[1], alpha.shape[0], *([1] * (sliced.dim() - 2)))
            return (coef * sliced).sum(0), ((alpha.t() * b).sum(0) if b is not None else None)
        coef = alpha.t().reshape(alpha.shape[1], 1, alpha.shape[0], *([1] * (sliced.dim() - 3)))
        return (coef * sliced).sum(0), (alpha.mean(0) @ b if b is not None else None)


def mixing_log(net: nn.Module) -> dict[str, float | list[float]]:
    """``{"mix/<bank>/entropy": nats, "mix/<bank>/weights": [m floats]}`` for every mixture
    bank under ``net`` that owns its router, for the active architecture (neuron-wise: the
    mean over the neurons of the last index the bank served, else all of them)."""
    out: dict[str, float | list[float]] = {}
    with torch.no_grad():
        for name, m in net.named_modules():
            if not isinstance(m, MixtureBank) or m.owner is not m or m._encoding is None:
                continue
            alpha = m.mixing_weights(m._last_index).float()
            alpha = alpha.reshape(-1, alpha.shape[-1])
            ent = -(alpha * alpha.clamp_min(1e-12).log()).sum(-1).mean()
            key = name.removesuffix(".bank")
            out[f"mix/{key}/entropy"] = float(ent)
            out[f"mix/{key}/weights"] = [round(float(v), 5) for v in alpha.mean(0)]
    return out
