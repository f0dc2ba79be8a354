"""``progressive``: progressive shrinking (Once-for-All, Cai et al., ICLR 2020).

Training starts with the largest network only; then the space opens one group of
parameters at a time, in ``order`` (OFA: kernel size, then depth, then width / expand ratio),
each phase sampling the opened parameters freely while the rest stay at their largest value.
``order`` lists name patterns matched against the last part of each parameter's name
(``n_layer``, ``width`` matches every ``layers.i.width``); parameters no pattern matches open
with the last group. ``warmup`` is the fraction of steps with the largest only; the remaining
steps are split evenly over the groups. Each step trains the largest and ``n_random`` subnets
of the current phase (OFA samples several subnets per step), optionally distilled from the
largest (``distill``, as the sandwich strategy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace
from archlab.spaces.params import PerLayer
from archlab.spaces.space import _count, _order

from .base import Strategy, register_strategy
from .sandwich import Sandwich


def _restrict(block: Mapping[str, Any], arch: Mapping[str, Any], largest: Mapping[str, Any], opened: set[str]) -> dict[str, Any]:
    """``arch`` with every parameter not in ``opened`` at its value in ``largest`` (a fixed depth
    takes the missing layers from ``largest`` too), walking the space's ``block``."""
    out = {k: (arch[k] if k in opened else largest[k]) for k, p in block.items() if not isinstance(p, PerLayer)}
    for k, p in block.items():
        if isinstance(p, PerLayer):
            out[k] = [_restrict(p.params, arch[k][i] if i < len(arch[k]) else largest[k][i], largest[k][i], opened)
                      for i in range(_count(p, out))]
    return _order(block, out)


@register_strategy("progressive")
class ProgressiveShrinking(Strategy):
    """Largest only, then one parameter group opened per phase (see the module docstring)."""

    def __init__(self, space: SearchSpace, order: Sequence[str] = ("n_layer",), warmup: float = 0.2,
                 n_random: int = 2, distill: bool = False, temperature: float = 1.0) -> None:
        super().__init__(space)
        if isinstance(order, str) or not all(isinstance(o, str) and o for o in order):
            raise ArchlabError(f"strategy_options.order: a list of parameter names, got {order!r}")
        if not (isinstance(warmup, (int, float)) and 0.0 <= warmup < 1.0):
            raise ArchlabError(f"strategy_options.warmup: a fraction in [0, 1), got {warmup!r}")
        if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
            raise ArchlabError(f"strategy_options.n_random: an integer >= 1, got {n_random!r}")
        names = sorted({n.split(".")[-1] for n in _leaf_names(space.largest().to_dict())})
        groups = [{n for n in names if n == o} for o in order]
        unknown = [o for o, g in zip(order, groups) if not g]
        if unknown:
            raise ArchlabError(f"strategy_options.order: {unknown[0]!r} is no parameter of the space; allowed: {', '.join(names)}")
        rest = set(names) - set().union(*groups)
        if rest:
            groups.append(rest)
        self.groups = groups
        self.warmup = float(warmup)
        self.n_random = n_random
        self._inner = Sandwich(space, n_random=0, distill=distill, temperature=temperature)
        self._largest = space.largest()
        self._largest_dict = self._largest.to_dict()
        self.opened: set[str] = set()
        self.phase = 0

    def on_step_start(self, step: int, total: int) -> None:
        t = step / max(1, total)
        if t < self.warmup:
            self.phase = 0
        else:
            span = (1.0 - self.warmup) / len(self.groups)
            self.phase = min(len(self.groups), 1 + int((t - self.warmup) / span))
        self.opened = set().union(*self.groups[: self.phase]) if self.phase else set()

    def archs(self, rng: np.random.Generator) -> list[Arch]:
        if not self.opened:
            return [self._largest]
        out = [self._largest]
        for _ in range(self.n_random):
            raw = _restrict(self.space.params, self.space.sample(rng).to_dict(), self._largest_dict, self.opened)
            out.append(self.space.validate(raw))
        return out

    def step(self, ctx: Any, archs: list[Arch]) -> dict[str, float]:
        logged = self._inner.step(ctx, archs)
        logged["phase"] = float(self.phase)
        return logged


def _leaf_names(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, (list, tuple)) and v and isinstance(v[0], Mapping):
            for i, b in enumerate(v):
                out += _leaf_names(b, f"{prefix}{k}.{i}.")
        else:
            out.append(f"{prefix}{k}")
    return out
