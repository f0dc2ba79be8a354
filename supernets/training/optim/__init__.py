"""Optimizers and learning-rate schedules for supernet training (registries by name).

``slice_adamw.SliceAdamW`` is the reference: AdamW on the used slices of a supernet's shared
weights, from ordinary gradients. ``fast.FastSliceAdamW`` is the same optimizer made fast
(leaf views, dense fused workspaces); ``TrainConfig(optimizer="adamw")`` gives a supernet the
fast one, or the reference where DDP or AMP grad scaling need ordinary ``.grad``.
``schedules``: warmup + cosine / constant learning-rate schedules. Nothing is global: whoever
needs an optimizer's slice gradients (``clip_gradients``) is given the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ...layers.banks import WeightBank
from .fast import FastSliceAdamW
from .schedules import SCHEDULES, make_scheduler
from .slice_adamw import SliceAdamW

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def _adamw(groups: list[dict[str, Any]], cfg: Any, model: nn.Module | None = None,
           leaf_views: bool = True) -> torch.optim.Optimizer:
    if model is not None and any(isinstance(m, WeightBank) and m.slice_params() is not None for m in model.modules()):
        cls = FastSliceAdamW if leaf_views else SliceAdamW
        return cls(groups, model, lr=cfg.lr, betas=(0.9, 0.99))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))  # ordinary modules


_adamw.slice_aware = True  # type: ignore[attr-defined]


def _sgd(groups: list[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


OPTIMIZERS: dict[str, OptimizerFactory] = {"adamw": _adamw, "sgd": _sgd}


@runtime_checkable
class _NoWeightDecay(Protocol):
    """A module listing parameters that get no weight decay (``isinstance`` checks ``hasattr``)."""

    def no_weight_decay(self) -> Iterable[torch.Tensor]: ...


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: matrices and kernels (dim >= 2) get ``weight_decay``; biases, norms,
    other vectors and what a module lists in ``no_weight_decay()`` (a mixture bank's router
    and stacked expert biases) get none. Parameters shared by several modules appear once."""
    exempt = {id(p) for m in model.modules() if isinstance(m, _NoWeightDecay) for p in m.no_weight_decay()}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in exempt else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, cfg: Any, *, leaf_views: bool = True) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` over ``model``'s parameters. ``adamw`` on a
    supernet is a ``FastSliceAdamW`` attached to ``model`` (``leaf_views=False``, under DDP /
    AMP grad scaling: the reference ``SliceAdamW``, ordinary ``.grad``)."""
    factory = OPTIMIZERS[cfg.optimizer]
    groups = param_groups(model, cfg.weight_decay)
    if getattr(factory, "slice_aware", False):
        return factory(groups, cfg, model=model, leaf_views=leaf_views)
    return factory(groups, cfg)


def step_grads(parameters: Iterable[nn.Parameter], optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
    """The gradients of a step: the ``.grad`` of ``parameters``, plus the gradients of used
    slices that ``optimizer`` holds (a ``SliceAdamW``; without it only ``.grad`` counts)."""
    out = [p.grad for p in parameters if p.grad is not None]
    if isinstance(optimizer, SliceAdamW):
        out.extend(optimizer.slice_grads())
    return out


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float | None,
                   optimizer: torch.optim.Optimizer | None = None) -> float:
    """Clip the global gradient norm to ``max_norm`` (no-op for None/0); returns the norm before.
    Pass the ``optimizer``: a ``FastSliceAdamW`` holds slice gradients ``.grad`` does not show."""
    grads = [g.detach() for g in step_grads(parameters, optimizer)]
    if not grads:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if max_norm:
        # as torch.nn.utils.clip_grad_norm_
        coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.device))
    return float(total)


__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "FastSliceAdamW",
    "SliceAdamW",
    "clip_gradients",
    "make_optimizer",
    "make_scheduler",
    "param_groups",
    "step_grads",
]
