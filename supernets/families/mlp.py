"""``MLPNet``: multi-layer perceptron supernet (parameter names as ``mlp_space``).

Elastic depth (``n_layer``) and a width per hidden layer (``layers[i].width``); an optional
categorical ``activation`` parameter picks the activation, else the ``activation`` argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace
from archlab.spaces.library import mlp_space
from archlab.spaces.params import count_values

from ..base import Supernet, extreme_arch, max_value
from ..layers.elastic import ACTIVATIONS, ElasticLinear, make_activation
from .mlp_plain import PlainMLP


class MLPNet(Supernet):
    """MLP supernet: ``net(x (B, in_features)) -> logits (B, num_classes)`` (inputs are flattened)."""

    family = "mlp"
    requires = {"n_layer": True, "layers": {"width": True}}

    def __init__(
        self,
        space: SearchSpace | None = None,
        in_features: int = 64,
        num_classes: int = 10,
        activation: str = "relu",
        sharing: str = "entangled",
        sharing_options: Mapping[str, Any] | None = None,
        roles: Any = None,
    ) -> None:
        space = space if space is not None else self.default_space()
        super().__init__(space, sharing=sharing, sharing_options=sharing_options, roles=roles)
        p = space.params
        depth_max = max(count_values(p, "layers"))
        width_max = int(max_value(p["layers"].params["width"], "layers[i].width"))  # type: ignore[attr-defined]
        make_activation(activation)
        if "activation" in p:
            for a in p["activation"].values():
                if a not in ACTIVATIONS:
                    raise ArchlabError(f"activation: unknown {a!r} in the space; allowed: {', '.join(ACTIVATIONS)}")
        self.dims = {"in_features": int(in_features), "num_classes": int(num_classes), "activation": activation}
        f = self.bank_factory
        self.hidden = nn.ModuleList(
            ElasticLinear(in_features if i == 0 else width_max, width_max, True, f, role="linear")
            for i in range(depth_max)
        )
        head_in = max(width_max, in_features) if min(count_values(p, "layers")) == 0 else width_max
        self.classifier = ElasticLinear(head_in, num_classes, True, f, role="head")
        self.acts = nn.ModuleDict({name: make_activation(name) for name in ACTIVATIONS})
        self.set_arch(extreme_arch(space))

    @classmethod
    def default_space(cls, **kwargs: Any) -> SearchSpace:
        """``mlp_space``: n_layer 1..4, width {32, 64, 128, 256} per layer."""
        return mlp_space(**kwargs)

    def _apply_arch(self, arch: Arch) -> None:
        self.activation = str(arch["activation"]) if "activation" in arch else self.dims["activation"]
        self.act = self.acts[self.activation]
        self.depth = int(arch["n_layer"])
        cin = self.dims["in_features"]
        self.widths = [int(layer["width"]) for layer in arch["layers"]]
        for layer, w in zip(cast("list[ElasticLinear]", self.hidden), self.widths):  # ModuleList: untyped items
            layer.set_active(cin, w)
            cin = w
        self.classifier.set_active(cin, self.dims["num_classes"])

    soft: Any = None  # the soft forward (archlab.supernets.families.soft_appliers) while a soft arch is set

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.soft is not None:
            return self.soft(self, x)
        x = x.flatten(1)
        for i in range(self.depth):
            x = self.act(self.hidden[i](x))
        return self.classifier(x)

    def _extract(self) -> PlainMLP:
        dims = {**self.dims, "widths": list(self.widths), "activation": self.activation}
        p = next(self.parameters())
        plain = PlainMLP(dims, self.arch.to_dict()).to(device=p.device, dtype=p.dtype)
        for i in range(self.depth):
            cast(ElasticLinear, self.hidden[i]).copy_to(plain.hidden[i])  # ModuleList: untyped items
        self.classifier.copy_to(plain.classifier)
        return plain

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """Random features ``(batch_size, in_features)`` (fixed seed) on the net's device."""
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch_size, self.dims["in_features"], generator=g).to(self._device())
