"""``stochastic``: THOR, "Taming Sparsely Activated Transformer with Stochastic Experts" (Zuo
et al., ICLR 2022, arXiv:2110.04260).

Rule: no learned router. Each token goes to one expert drawn uniformly at random (gate 1), in
training and in inference, as in the paper. Training runs the network twice on the same batch
(two independent draws) and adds the consistency regulariser
``alpha * CR``, ``CR = 1/2 (KL(p1 || p2) + KL(p2 || p1))`` (symmetric KL between the two
passes' output distributions), to the mean of the two task losses: ``thor_loss`` does this
for any model whose MoE layers use this router, and archlab's trainer does it for every
training step whose subnet routes a layer with it (``thor_alpha``; with
``TrainConfig.moe_aux_coef`` > 0, the default, which turns routing losses on). Option ``alpha``
(default 1.0) is the regulariser's weight. In inference the draws come from a generator
re-seeded every forward (``seed`` option + the layer index), so evaluation is deterministic
and an extracted module reproduces the supernet's outputs exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from .base import Dispatch, Router, RouteSettings, RoutingState, register_router

DEFAULT_ALPHA = 1.0


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """``1/2 (KL(p_a||p_b) + KL(p_b||p_a))`` of the softmax over the last axis, mean over the
    other positions (nats, float32 scalar)."""
    la = F.log_softmax(logits_a.float().reshape(-1, logits_a.shape[-1]), -1)
    lb = F.log_softmax(logits_b.float().reshape(-1, logits_b.shape[-1]), -1)
    kl_ab = (la.exp() * (la - lb)).sum(-1)
    kl_ba = (lb.exp() * (lb - la)).sum(-1)
    return 0.5 * (kl_ab + kl_ba).mean()


def thor_loss(model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
              alpha: float = DEFAULT_ALPHA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """THOR's training objective on one batch: two forwards of ``model(x)`` (independent random
    experts), ``1/2 (loss_fn(out1) + loss_fn(out2)) + alpha * CR``. Returns ``(total, the
    first pass's logits, CR)``."""
    out1, out2 = model(x), model(x)
    cr = symmetric_kl(out1, out2)
    return 0.5 * (loss_fn(out1) + loss_fn(out2)) + alpha * cr, out1, cr


def thor_alpha(net: nn.Module) -> float:
    """The consistency weight ``alpha`` when a layer of ``net`` routed with this router in its
    last forward in training mode (0.0 otherwise: no second pass needed)."""
    if not net.training:
        return 0.0
    alphas = [float(m.rule_options().get("alpha", DEFAULT_ALPHA)) for m in _routed(net)
              if m.last_routing is not None and m.last_routing.router == "stochastic"]
    return max(alphas, default=0.0)


def clear_routing(net: nn.Module) -> None:
    """Forget every layer's last dispatch (so ``thor_alpha`` sees only the next forward)."""
    for m in _routed(net):
        m.last_routing = None


class _Record(Protocol):
    router: str


class _Routed(Protocol):
    """What this module reads of a routed FFN (layers.moe, not imported: it imports the routers)."""

    last_routing: _Record | None

    def rule_options(self) -> dict[str, Any]: ...


def _routed(net: nn.Module) -> Iterator[_Routed]:
    """The modules of ``net`` with a ``last_routing`` recorded (routed FFNs that routed)."""
    return (cast(_Routed, m) for m in net.modules() if getattr(m, "last_routing", None) is not None)


@register_router("stochastic")
class StochasticRouter(Router):
    """THOR random routing (option ``seed``: base seed of the inference draws, default 0)."""

    option_names = ("seed", "alpha")

    def route(self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor], settings: RouteSettings,
              state: RoutingState) -> Dispatch:
        n = x.shape[0]
        if self.training:
            experts = torch.randint(settings.experts, (n,), device=x.device)
        else:
            g = torch.Generator().manual_seed(int(self.options.get("seed", 0)) * 1_000_003 + self.layer_index)
            experts = torch.randint(settings.experts, (n,), generator=g).to(x.device)
        tokens = torch.arange(n, device=x.device)
        return Dispatch(tokens, experts, x.new_ones(n, dtype=torch.float32), n, settings.experts)
