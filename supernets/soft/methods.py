"""Architecture parameters and the differentiable search methods that turn them into mixing
probabilities (``archlab.supernets.soft.ops``), each as its paper and official code set it:

- ``darts`` (Liu et al., ICLR 2019): ``softmax(alpha)`` per choice; first order (the
  architecture gradient of the validation loss at the current weights). ``darts2`` is the
  second-order (unrolled) variant, run by the bilevel loop (``archlab.search.oneshot``).
  Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3; alpha initialised ``1e-3 * N(0, 1)``.
- ``gdas`` (Dong & Yang, CVPR 2019): Gumbel-softmax ``softmax((log_softmax(alpha) + g) / tau)``
  with ``g`` Gumbel noise, ``tau`` annealed linearly 10 -> 0.1 over the search; the forward
  uses the hard one-hot sample with a straight-through gradient (``hard - soft.detach() +
  soft``), so each step trains exactly one sampled subnet. Resampled while not finite.
- ``drnas`` (Chen et al., ICLR 2021): concentration ``beta = elu(alpha) + 1``, mixing weights
  drawn from ``Dirichlet(beta)`` with the reparameterised sampler (``rsample``); KL to the
  ``Dirichlet(1)`` anchor, scale 1e-3, as regulariser.
- ``tanglenas`` (Sukthanker et al., AutoML 2024): the DrNAS sampler on entangled weights
  (their main setting), with their search config's L2 regulariser (scale 1e-3) on the
  concentrations instead of the KL term.

The final architecture takes each choice's most likely value under its distribution
(``expected``: softmax for darts/gdas, the Dirichlet mean ``beta / sum(beta)`` for
drnas/tanglenas); darts and gdas skip the zero op (``none``) there, as their papers derive
cells, drnas and tanglenas take the plain argmax, as their NB201 code does (``derive``).
New methods register with ``@register_method``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces.soft import SoftLayout

METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: make a search method available by ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def get_method(name: str, **options: Any) -> Method:
    """The method ``name`` (one of ``METHODS``) with ``options`` (its attributes)."""
    cls = METHODS.get(str(name))
    if cls is None:
        raise ArchlabError(f"method: unknown {name!r}; allowed: {', '.join(METHODS)}")
    return cls(**options)


class ArchParameters(nn.Module):
    """One parameter vector per choice slot of the space (``alphas[j]`` for ``layout.slots[j]``),
    initialised ``init_std * N(0, 1)`` from ``seed``."""

    def __init__(self, layout: SoftLayout, seed: int = 0, init_std: float = 1e-3) -> None:
        super().__init__()
        self.layout = layout
        g = torch.Generator().manual_seed(int(seed))
        self.alphas = nn.ParameterList(nn.Parameter(init_std * torch.randn(s.size, generator=g)) for s in layout.slots)

    def as_dict(self, tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{slot path: tensor}`` of per-slot tensors in slot order."""
        return {s.path: t for s, t in zip(self.layout.slots, tensors)}


class Method:
    """Base: how architecture parameters become mixing probabilities, and the arch optimiser."""

    name: ClassVar[str] = ""
    second_order: ClassVar[bool] = False
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3

    def __init__(self, **options: Any) -> None:
        allowed = self.option_names()
        for k, v in options.items():
            if k not in allowed:
                raise ArchlabError(f"{self.name}: unknown option {k!r}; allowed: {', '.join(allowed)}")
            setattr(self, k, tuple(float(x) for x in v) if isinstance(getattr(self, k), tuple) else float(v))

    @classmethod
    def option_names(cls) -> list[str]:
        """The settings a method takes (learning rate, temperatures, regulariser scale)."""
        names = {k for c in cls.__mro__ for k, v in vars(c).items()
                 if not k.startswith("_") and isinstance(v, (float, tuple)) and not isinstance(v, bool)}
        return sorted(names)

    def optimizer(self, params: ArchParameters) -> torch.optim.Optimizer:
        return torch.optim.Adam(params.parameters(), lr=self.arch_lr, betas=self.arch_betas,
                                weight_decay=self.arch_weight_decay)

    def mixing(self, alphas: Sequence[torch.Tensor], progress: float,
               generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """The per-slot weights the supernet mixes with at this step (``progress`` in [0, 1])."""
        return self.expected(alphas)

    def expected(self, alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The per-slot architecture distributions (what the history records, argmax picks)."""
        return [F.softmax(a, -1) for a in alphas]

    def regulariser(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor | None:
        return None

    # the derivation rule: DARTS (and GDAS, which derives as DARTS) keep the strongest op
    # *excluding the zero op*; the NB201 code of DrNAS (and TangleNAS) takes the argmax over all
    exclude_zero: ClassVar[bool] = False
    zero_value: ClassVar[str] = "none"

    def derive(self, values: Sequence[Sequence[Any]], probs: Sequence[Any]) -> list[int]:
        """The index of the chosen value of every slot (``values[j]`` its allowed values,
        ``probs[j]`` its distribution): the argmax, without the zero op when ``exclude_zero``
        and the slot has another value."""
        out = []
        for vals, p in zip(values, probs):
            p = [float(x) for x in p]
            if self.exclude_zero and self.zero_value in vals and len(vals) > 1:
                p[list(vals).index(self.zero_value)] = -1.0
            out.append(max(range(len(p)), key=p.__getitem__))
        return out


@register_method("darts")
class Darts(Method):
    """DARTS, first order: softmax mixing, gradient of the validation loss at the current w."""

    exclude_zero = True


@register_method("darts2")
class DartsSecondOrder(Darts):
    """DARTS, second order: the unrolled weights ``w' = w - xi * grad_w L_train`` (xi = the
    weight learning rate), Hessian-vector product by central finite differences."""

    second_order = True


def _gumbel(shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(E)``, ``E ~ Exponential(1)`` (as GDAS's code draws it)."""
    e = torch.empty(shape).exponential_(generator=generator).clamp_min(1e-20)
    return (-e.log()).to(device)


@register_method("gdas")
class Gdas(Method):
    """GDAS: hard Gumbel-softmax sample, straight-through gradient, tau 10 -> 0.1."""

    tau_max: float = 10.0
    tau_min: float = 0.1
    exclude_zero = True

    def tau(self, progress: float) -> float:
        return self.tau_max - (self.tau_max - self.tau_min) * min(max(progress, 0.0), 1.0)

    def mixing(self, alphas: Sequence[torch.Tensor], progress: float,
               generator: torch.Generator | None = None) -> list[torch.Tensor]:
        tau, out = self.tau(progress), []
        for a in alphas:
            for _ in range(100):
                soft = F.softmax((F.log_softmax(a, -1) + _gumbel(a.shape, a.device, generator)) / tau, -1)
                if torch.isfinite(soft).all():
                    break
            hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
            out.append(hard - soft.detach() + soft)
        return out


@register_method("drnas")
class DrNas(Method):
    """DrNAS: Dirichlet(elu(alpha) + 1) mixing weights (reparameterised), KL to Dirichlet(1)."""

    reg_scale: float = 1e-3

    @staticmethod
    def concentration(a: torch.Tensor) -> torch.Tensor:
        return F.elu(a) + 1.0

    def mixing(self, alphas: Sequence[torch.Tensor], progress: float,
               generator: torch.Generator | None = None) -> list[torch.Tensor]:
        out = []
        for a in alphas:
            # torch's reparameterised Dirichlet draws from the global generator (seeded by the loop)
            w = torch.distributions.Dirichlet(self.concentration(a)).rsample()
            out.append(w)
        return out

    def expected(self, alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.concentration(a) / self.concentration(a).sum() for a in alphas]

    def regulariser(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor | None:
        terms = []
        for a in alphas:
            beta = self.concentration(a)
            anchor = torch.distributions.Dirichlet(torch.ones_like(beta))
            terms.append(torch.distributions.kl_divergence(torch.distributions.Dirichlet(beta), anchor))
        return self.reg_scale * torch.stack(terms).sum()


@register_method("tanglenas")
class TangleNas(DrNas):
    """TangleNAS's setting: the DrNAS sampler on entangled weights, L2 on the concentrations."""

    def regulariser(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor | None:
        return self.reg_scale * torch.stack([self.concentration(a).square().sum() for a in alphas]).sum()


__all__ = ["METHODS", "ArchParameters", "Darts", "DartsSecondOrder", "DrNas", "Gdas", "Method", "TangleNas",
           "get_method", "register_method"]
