"""Training strategies: which architectures a supernet trains on at each step.

A strategy is one small module defining a ``Strategy`` subclass decorated with
``@register_strategy("name")``; ``TrainConfig(strategy="name", strategy_options={...})``
selects it. Built in: ``uniform`` (single path, SPOS/HAT) and ``sandwich`` (largest, smallest
and ``n_random`` random subnets per step, optional in-place distillation), ``pada`` (PA&DA:
path and data importance sampling from gradient-norm feedback) and ``progressive``
(Once-for-All progressive shrinking).
"""

from __future__ import annotations

import importlib

from .base import STRATEGIES, StepContext, Strategy, make_strategy, register_strategy

for _name in ("uniform", "sandwich", "pada", "progressive"):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["STRATEGIES", "StepContext", "Strategy", "make_strategy", "register_strategy"]
