"""Optimizers and learning-rate schedules for supernet training (registries by name)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

OptimizerFactory = Callable[[list[dict[str, Any]], Any], torch.optim.Optimizer]


def _adamw(groups: list[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def _sgd(groups: list[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


OPTIMIZERS: dict[str, OptimizerFactory] = {"adamw": _adamw, "sgd": _sgd}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: matrices and kernels (dim >= 2) get ``weight_decay``; biases, norms and
    other vectors get none. Parameters shared by several modules appear once."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` over ``model``'s parameters."""
    return OPTIMIZERS[cfg.optimizer](param_groups(model, cfg.weight_decay), cfg)


def _cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _constant(step: int, total: int, warmup: int, min_ratio: float) -> float:
    return (step + 1) / warmup if warmup and step < warmup else 1.0


SCHEDULES: dict[str, Callable[[int, int, int, float], float]] = {"cosine": _cosine, "constant": _constant}


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``cfg.warmup_steps`` then ``cfg.schedule`` (cosine down to
    ``cfg.min_lr_ratio`` x lr at ``cfg.steps``, or constant). Stepped once per training step.

    The multiplier is a closure (not saved in the scheduler's state), so a resumed run with
    more steps follows the new length."""
    fn = SCHEDULES[cfg.schedule]
    total, warmup, floor = int(cfg.steps), int(cfg.warmup_steps), float(cfg.min_lr_ratio)

    def multiplier(step: int) -> float:
        return fn(step, total, warmup, floor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float | None) -> float:
    """Clip the global gradient norm to ``max_norm`` (no-op for None/0); returns the norm before."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    if not max_norm:
        return float(torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params])))
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
