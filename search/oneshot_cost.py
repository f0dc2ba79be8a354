"""Latency as a differentiable cost: per-choice costs and their expectation.

``ChoiceCosts.fit(layout, predict_ms)`` fits an additive model ``latency(arch) ~ base +
sum over present slots j of cost_j[value_j]`` (ms) to a latency predictor's outputs on
architectures sampled from the space (ridge least squares on one-hot columns, each column
scaled by the slot's presence). This is the per-layer lookup table of Once-for-All /
nn-Meter written per choice, so any predictor (the LUT itself included) becomes one.

``expected(probs)`` is the expected latency under the soft architecture, exact for the
additive model and independent slots: ``base + sum_j P(present_j) * probs_j . cost_j``,
differentiable in the probabilities. ``penalty`` turns it into a loss term, either
``weight * E[latency] / scale`` or, with a target, ``weight * relu(E[latency] / target - 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from archlab.spaces import Arch
from archlab.spaces.soft import SoftLayout

from .errors import SearchError


@dataclass
class ChoiceCosts:
    """Additive per-choice latency model (ms) over a ``SoftLayout``."""

    layout: SoftLayout
    base: float
    costs: list[np.ndarray]
    r2: float

    @classmethod
    def fit(cls, layout: SoftLayout, predict_ms: Callable[[list[Arch]], Sequence[float]], n: int = 256,
            seed: int = 0, ridge: float = 1e-3) -> ChoiceCosts:
        """Fit to ``predict_ms`` (a list of archs -> ms each) on ``n`` sampled architectures."""
        archs = layout.space.sample_many(n, seed=seed, unique=False)
        y = np.asarray(predict_ms(archs), dtype=np.float64).reshape(-1)
        if y.shape[0] != len(archs) or not np.all(np.isfinite(y)):
            raise SearchError("latency predictor: expected one finite latency (ms) per architecture")
        X = np.stack([cls._row(layout, a) for a in archs])
        A = np.hstack([np.ones((len(archs), 1)), X])
        reg = ridge * max(1.0, float(np.mean(A.sum(1))))
        coef = np.linalg.solve(A.T @ A + reg * np.diag([0.0] + [1.0] * X.shape[1]), A.T @ y)
        fitted = A @ coef
        ss = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - float(np.sum((y - fitted) ** 2)) / ss if ss > 0 else 1.0
        costs, pos = [], 1
        for s in layout.slots:
            costs.append(coef[pos : pos + s.size])
            pos += s.size
        return cls(layout, float(coef[0]), costs, r2)

    @staticmethod
    def _row(layout: SoftLayout, arch: Arch) -> np.ndarray:
        soft = layout.one_hot(arch)
        present = soft.presence()
        return np.concatenate([v * present[j] for j, v in enumerate(soft.vectors)])

    def of_arch(self, arch: Arch) -> float:
        """The additive model's latency of one architecture (ms)."""
        row = self._row(self.layout, arch)
        return self.base + float(row @ np.concatenate(self.costs))

    def expected(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected latency (ms) under ``{slot path: probabilities}``, differentiable."""
        total: Any = None
        for j, s in enumerate(self.layout.slots):
            p = probs[s.path]
            term = p @ torch.as_tensor(self.costs[j], dtype=p.dtype, device=p.device)
            for k, coef in self.layout.presence[j]:
                q = probs[self.layout.slots[k].path]
                term = term * (q @ torch.as_tensor(coef, dtype=q.dtype, device=q.device))
            total = term if total is None else total + term
        return total + self.base


def penalty(expected_ms: torch.Tensor, weight: float, target_ms: float | None, scale_ms: float) -> torch.Tensor:
    """The latency loss term: ``weight * relu(E / target - 1)`` with a target, else
    ``weight * E / scale_ms``."""
    if target_ms is not None:
        if not target_ms > 0:
            raise SearchError(f"latency_target: {target_ms!r}; allowed: a positive number of ms")
        return weight * torch.relu(expected_ms / float(target_ms) - 1.0)
    return weight * expected_ms / max(float(scale_ms), 1e-9)


__all__ = ["ChoiceCosts", "penalty"]
