"""Plain twin of ``ConvNet``: the standalone module ``net.extract(arch)`` returns, ordinary torch
layers only, rebuilt from its JSON ``dims`` (see ``archlab.supernets.families.plain``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..layers.elastic import make_activation
from .plain import PlainSubnet, register_plain


class PlainInvertedResidual(nn.Module):
    """MobileNet block: 1x1 expand, BN, act, depthwise kxk, BN, act, 1x1 project, BN (+ x)."""

    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int, activation: str) -> None:
        super().__init__()
        self.expand = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.depthwise = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.project = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.act = make_activation(activation)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.expand(x)))
        y = self.act(self.bn2(self.depthwise(y)))
        y = self.bn3(self.project(y))
        return x + y if self.residual else y


@register_plain
class PlainConvNet(PlainSubnet):
    """Stem conv, inverted-residual blocks, 1x1 head conv, global average pool, classifier."""

    family = "convnet"

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__(dims, arch)
        act = self.dims.get("activation", "hardswish")
        stem, head = int(self._get("stem_channels")), int(self._get("head_channels"))
        self.stem = nn.Conv2d(int(self._get("in_channels")), stem, 3, int(self._get("stem_stride")), 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        self.act = make_activation(act)
        self.blocks = nn.ModuleList(
            PlainInvertedResidual(int(b["in"]), int(b["mid"]), int(b["out"]), int(b["kernel"]), int(b["stride"]), act)
            for b in self._get("blocks")
        )
        last = int(self.dims["blocks"][-1]["out"]) if self.dims["blocks"] else stem
        self.head = nn.Conv2d(last, head, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(head)
        self.classifier = nn.Linear(head, int(self._get("num_classes")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        x = self.act(self.head_bn(self.head(x)))
        return self.classifier(x.mean((2, 3)))
