"""``uniform``: single-path uniform sampling (SPOS, HAT): one random subnet per step."""

from __future__ import annotations

import numpy as np

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace

from .base import Strategy, register_strategy


@register_strategy("uniform")
class Uniform(Strategy):
    """``n_archs`` architectures drawn uniformly per step (default 1: single path)."""

    def __init__(self, space: SearchSpace, n_archs: int = 1) -> None:
        super().__init__(space)
        if not isinstance(n_archs, int) or n_archs < 1:
            raise ArchlabError(f"strategy_options.n_archs: must be a positive integer, got {n_archs!r}")
        self.n_archs = n_archs

    def archs(self, rng: np.random.Generator) -> list[Arch]:
        return [self.space.sample(rng) for _ in range(self.n_archs)]
