"""Architecture routers: a small MLP from the architecture encoding to mixing logits.

A router reads the space's normalised encoding (``space.encode(arch, normalized=True)``, each
feature scaled by the space's own value range) and returns one logit per output slot. The
mixture banks of ``archlab.supernets.layers.mos`` turn those logits into expert weights. A router
depends on the architecture, not on the tokens, so it runs on one vector per forward.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.core.errors import ArchlabError


class ArchRouter(nn.Module):
    """MLP ``encoding (E,) -> logits (out_features,)``.

    ``layers`` is the number of linear layers (1: a linear map; 2: one hidden layer of
    ``hidden`` units; ...), with GELU between them.
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        if int(in_features) < 1:
            raise ArchlabError(
                f"router: encoding_size is {in_features}; a mixture bank needs the space's "
                "encoding width (the supernet passes space.encoding_size to BankFactory)"
            )
        if int(layers) < 1:
            raise ArchlabError(f"router_layers: {layers!r}; allowed: an integer >= 1")
        if int(hidden) < 1:
            raise ArchlabError(f"router_hidden: {hidden!r}; allowed: an integer >= 1")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        dims = [self.in_features] + [int(hidden)] * (int(layers) - 1) + [self.out_features]
        mods: list[nn.Module] = []
        for i in range(len(dims) - 1):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mods.append(nn.GELU())
        self.net = nn.Sequential(*mods)

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(out_features,)`` for one encoding vector."""
        return self.net(encoding)
