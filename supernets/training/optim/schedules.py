"""Learning-rate schedules by name (``SCHEDULES``) and ``make_scheduler``: linear warmup,
then cosine decay to a floor, or constant. A schedule maps ``(step, total, warmup,
min_ratio)`` to the multiplier of the base learning rate."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


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
