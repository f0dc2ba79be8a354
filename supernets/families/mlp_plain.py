"""Plain twin of ``MLPNet``: the standalone module ``net.extract(arch)`` returns, ordinary torch
layers only, rebuilt from its JSON ``dims`` (see ``archlab.supernets.families.plain``)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..layers.elastic import make_activation
from .plain import PlainSubnet, register_plain


@register_plain
class PlainMLP(PlainSubnet):
    """Linear + activation per hidden layer, then a linear classifier."""

    family = "mlp"

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__(dims, arch)
        sizes = [int(self._get("in_features")), *(int(w) for w in self._get("widths"))]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = make_activation(self.dims.get("activation", "relu"))
        self.classifier = nn.Linear(sizes[-1], int(self._get("num_classes")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.classifier(x)
