"""Zero-cost proxies: a score of an untrained network that ranks architectures without training.

``synflow(model, example)``: SynFlow (Tanaka et al., NeurIPS 2020; as a NAS proxy, Abdelfattah
et al., ICLR 2021). The network runs data-free: a copy in double precision, every weight
replaced by its absolute value, BatchNorm in eval mode (running statistics, so the score does
not depend on a batch), on an all-ones input shaped like ``example`` (integer inputs such as
token ids are used as given); the score is ``sum |theta * dR/dtheta|`` over the parameters,
where ``R`` is the sum of the outputs. It is returned as its natural log (it spans tens of
orders of magnitude across a space); ``-inf`` when nothing flows through the network, ``inf``
when the score overflows double precision.

``SynflowScorer(supernet)``: the log synflow of architectures, each scored as its subnet of
``supernet`` (one set of untrained weights for every architecture, so the score is a function
of the architecture alone; equal to ``synflow`` of the extracted subnet), cached by
``arch.key``; ``scorer(archs)`` returns an array. On NAS-Bench-201 (``CellNet`` at NB201's size:
16 channels, 5 cells per stage, 32x32 RGB input, 100 classes; ``bench/zero_cost.py``), over all
15,625 cells, the Spearman correlation of log synflow with the trained test accuracy is 0.764
(CIFAR-100) and 0.752 (ImageNet16-120), against 0.728 and 0.692 for the parameter count (paired
Kendall difference +0.017 [0.009, 0.023] and +0.041 [0.034, 0.047]); 0.03 s per cell on a core.

The score is a proxy baseline of ranking reports (``stats.proxies``) and an extra input of an
accuracy model (``archlab.search.ehvi_sampler``'s ``hints``), not an objective by itself: it
knows nothing of the data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from archlab.spaces import Arch


def _prepared(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in double precision, eval mode, every weight replaced by its absolute value."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
            p.requires_grad_(True)
    return net


def _score(net: nn.Module, example: torch.Tensor) -> float:
    """Log synflow of a prepared network (see ``_prepared``) on the all-ones form of ``example``."""
    for p in net.parameters():
        p.grad = None
    x = example[:1]
    x = torch.ones_like(x, dtype=torch.float64) if x.is_floating_point() else x.clone()
    out = net(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    out.double().sum().backward()
    with torch.no_grad():
        total = float(sum((p * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))
    if total == 0:
        return -math.inf
    return math.log(total) if math.isfinite(total) else math.inf


def synflow(model: nn.Module, example: torch.Tensor) -> float:
    """Natural log of the SynFlow score of ``model`` (see the module docstring); ``model`` is
    not changed. ``example``: one input of the model (its first row sets the shape)."""
    return _score(_prepared(model), example)


class SynflowScorer:
    """``scorer(archs) -> array`` of log synflow (see the module docstring), cached per arch.

    ``supernet``: an untrained supernet (``set_arch(arch)`` selects a subnet, ``example_input(1)``
    its input); the scorer works on one prepared copy of it (the caller's is not changed): with
    every weight non-negative and BatchNorm on running statistics, the supernet's forward of an
    architecture is its subnet's, and the weights it does not use get no gradient. A network
    through which nothing flows (score 0) gets ``floor`` (default 0.0, a score of 1), so every
    value is finite; an overflow (a score beyond double precision) raises ``ValueError``."""

    def __init__(self, supernet: Any, floor: float = 0.0) -> None:
        self.supernet, self.floor = supernet, float(floor)
        self._cache: dict[str, float] = {}
        self._net: Any = None
        self._example: torch.Tensor | None = None

    def score(self, arch: Arch) -> float:
        """The log synflow of one architecture."""
        if arch.key not in self._cache:
            if self._net is None:
                self._net = _prepared(self.supernet)
                self._example = self.supernet.example_input(1).to(next(self._net.parameters()).device)
            self._net.set_arch(arch)
            value = _score(self._net, cast("torch.Tensor", self._example))
            if value == math.inf:
                raise ValueError(f"synflow of {arch.key}: the score overflows double precision")
            self._cache[arch.key] = self.floor if value == -math.inf else value
        return self._cache[arch.key]

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.array([self.score(a) for a in archs], dtype=float)
