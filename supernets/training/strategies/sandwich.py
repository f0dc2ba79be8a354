"""``sandwich``: the sandwich rule (BigNAS/OFA): largest, smallest and ``n_random`` random
subnets per step, optionally with in-place distillation from the largest."""

from __future__ import annotations

import numpy as np

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace

from .base import StepContext, Strategy, register_strategy


@register_strategy("sandwich")
class Sandwich(Strategy):
    """Largest + smallest + ``n_random`` random architectures each step.

    With ``distill=True`` the largest learns from the labels and every other subnet from the
    largest's (detached) predictions: loss = ``alpha`` * KD(``temperature``) + (1 - ``alpha``) * CE.
    """

    def __init__(self, space: SearchSpace, n_random: int = 2, distill: bool = False,
                 temperature: float = 1.0, alpha: float = 1.0) -> None:
        super().__init__(space)
        if not isinstance(n_random, int) or n_random < 0:
            raise ArchlabError(f"strategy_options.n_random: must be an integer >= 0, got {n_random!r}")
        if not temperature > 0:
            raise ArchlabError(f"strategy_options.temperature: must be > 0, got {temperature!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ArchlabError(f"strategy_options.alpha: must be in [0, 1], got {alpha!r}")
        self.n_random, self.distill = n_random, bool(distill)
        self.temperature, self.alpha = float(temperature), float(alpha)
        self._largest, self._smallest = space.largest(), space.smallest()

    def archs(self, rng: np.random.Generator) -> list[Arch]:
        return [self._largest, self._smallest] + [self.space.sample(rng) for _ in range(self.n_random)]

    def step(self, ctx: StepContext, archs: list[Arch]) -> dict[str, float]:
        if not self.distill:
            out = super().step(ctx, archs)
            return out
        teacher_logits = ctx.forward(archs[0])
        loss = ctx.loss(teacher_logits)
        ctx.backward(loss)
        teacher = teacher_logits.detach()
        logged = {"loss_largest": float(loss.detach())}
        kd_losses = []
        for arch in archs[1:]:
            logits = ctx.forward(arch)
            kd = ctx.distill_loss(logits, teacher, self.temperature)
            total = self.alpha * kd + (1.0 - self.alpha) * ctx.loss(logits) if self.alpha < 1.0 else kd
            ctx.backward(total)
            kd_losses.append(float(total.detach()))
        logged["loss"] = logged["loss_largest"]
        if kd_losses:
            logged["loss_distill"] = float(np.mean(kd_losses))
        return logged
