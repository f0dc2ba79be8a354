"""``ConvNet``: MobileNetV3-like CNN supernet (Once-for-All style).

Stem (3x3 conv, BN, activation), stages of inverted-residual blocks (1x1 expand, BN, act,
depthwise kxk, BN, act, 1x1 project, BN, residual when stride 1 and channels match), a 1x1
head conv, global average pool and a linear classifier. Each stage has its own ``depth``
(the first blocks run), each block its ``kernel`` (centre crop of the largest) and
``expand`` ratio; an optional ``width_mult`` scales the stem and stage widths.
Parameter names as ``archlab.spaces.library.mobilenet_v3_space``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, SearchSpace
from archlab.spaces.library import mobilenet_v3_space
from archlab.spaces.params import count_values

from ..base import Supernet, extreme_arch, max_value
from ..layers.banks import BankFactory
from ..layers.conv import ElasticBatchNorm2d, ElasticConv2d
from ..layers.elastic import ElasticDepth, ElasticLinear, make_activation
from .convnet_plain import PlainConvNet

BASE_CHANNELS = (16, 24, 40, 80, 112, 160, 240, 320)


def scale_channels(channels: int, width_mult: float, divisor: int = 4) -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, math.floor(channels * float(width_mult) / divisor + 0.5) * divisor)


def expanded(channels: int, ratio: float) -> int:
    """Hidden width of an inverted residual: ``round(channels * ratio)``, at least 1."""
    return max(1, round(channels * float(ratio)))


class ElasticInvertedResidual(nn.Module):
    """Inverted residual block with elastic in/out channels, expand ratio and kernel."""

    def __init__(self, in_max: int, out_max: int, expand_max: float, kernel_max: int, stride: int,
                 activation: str, factory: BankFactory) -> None:
        super().__init__()
        mid_max = expanded(in_max, expand_max)
        self.stride = stride
        self.expand = ElasticConv2d(in_max, mid_max, 1, factory=factory, role="conv_expand")
        self.bn1 = ElasticBatchNorm2d(mid_max, factory=factory)
        self.depthwise = ElasticConv2d(mid_max, mid_max, kernel_max, stride, group_size=1, factory=factory,
                                       role="conv_depthwise")
        self.bn2 = ElasticBatchNorm2d(mid_max, factory=factory)
        self.project = ElasticConv2d(mid_max, out_max, 1, factory=factory, role="conv_project")
        self.bn3 = ElasticBatchNorm2d(out_max, factory=factory)
        self.act = make_activation(activation)
        self.residual = False

    def set_active(self, cin: int, cout: int, expand: float, kernel: int) -> dict[str, int]:
        mid = expanded(cin, expand)
        self.expand.set_active(cin, mid, 1)
        self.bn1.set_active(mid)
        self.depthwise.set_active(mid, mid, kernel)
        self.bn2.set_active(mid)
        self.project.set_active(mid, cout, 1)
        self.bn3.set_active(cout)
        self.residual = self.stride == 1 and cin == cout
        return {"in": cin, "mid": mid, "out": cout, "kernel": kernel, "stride": self.stride}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.expand(x)))
        y = self.act(self.bn2(self.depthwise(y)))
        y = self.bn3(self.project(y))
        return x + y if self.residual else y

    def copy_to(self, plain: nn.Module) -> None:
        for name in ("expand", "bn1", "depthwise", "bn2", "project", "bn3"):
            getattr(self, name).copy_to(getattr(plain, name))


class ConvNet(Supernet):
    """MobileNetV3-like supernet: ``net(images (B, C, H, W)) -> logits (B, num_classes)``."""

    family = "convnet"
    requires = {"stages": {"depth": True, "blocks": {"kernel": True, "expand": True}}}

    def __init__(
        self,
        space: SearchSpace | None = None,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 8,
        stem_channels: int = 16,
        stage_channels: Sequence[int] | None = None,
        stage_strides: Sequence[int] | None = None,
        stem_stride: int | None = None,
        head_channels: int = 128,
        activation: str = "hardswish",
        sharing: str = "entangled",
        sharing_options: Mapping[str, Any] | None = None,
        roles: Any = None,
    ) -> None:
        space = space if space is not None else self.default_space()
        super().__init__(space, sharing=sharing, sharing_options=sharing_options, roles=roles)
        p = space.params
        stages_p = p["stages"]
        stage_block = stages_p.params  # type: ignore[attr-defined]
        n_stages = max(count_values(p, "stages"))
        if min(count_values(stage_block, "blocks")) < 1:
            raise ArchlabError("stages[i].depth: ConvNet needs at least one block per stage (depth >= 1)")
        depth_max = max(count_values(stage_block, "blocks"))
        block = stage_block["blocks"].params
        kernel_max = int(max_value(block["kernel"], "stages[i].blocks[j].kernel"))
        expand_max = float(max_value(block["expand"], "stages[i].blocks[j].expand"))
        self.has_width_mult = "width_mult" in p
        wm_max = float(max_value(p["width_mult"], "width_mult")) if self.has_width_mult else 1.0
        if stage_channels is None:
            if n_stages > len(BASE_CHANNELS):
                raise ArchlabError(f"stage_channels: give {n_stages} widths (default covers {len(BASE_CHANNELS)} stages)")
            stage_channels = BASE_CHANNELS[:n_stages]
        if len(stage_channels) != n_stages:
            raise ArchlabError(f"stage_channels: expected {n_stages} widths, got {len(stage_channels)}")
        stem_stride = int(stem_stride) if stem_stride else (1 if image_size <= 16 else 2)
        if stage_strides is None:
            res, strides = math.ceil(image_size / stem_stride), []
            for i in range(n_stages):
                s = 2 if i > 0 and res > 2 else 1
                res = math.ceil(res / s)
                strides.append(s)
            stage_strides = strides
        if len(stage_strides) != n_stages:
            raise ArchlabError(f"stage_strides: expected {n_stages} strides, got {len(stage_strides)}")
        make_activation(activation)
        self.dims = {
            "num_classes": int(num_classes), "in_channels": int(in_channels), "image_size": int(image_size),
            "stem_channels": int(stem_channels), "stage_channels": [int(c) for c in stage_channels],
            "stage_strides": [int(s) for s in stage_strides], "stem_stride": stem_stride,
            "head_channels": int(head_channels), "activation": activation,
        }
        f = self.bank_factory
        stem_max = scale_channels(stem_channels, wm_max)
        self.stem = ElasticConv2d(in_channels, stem_max, 3, stem_stride, factory=f, role="conv")
        self.stem_bn = ElasticBatchNorm2d(stem_max, factory=f)
        self.act = make_activation(activation)
        stages, cin, widest = [], stem_max, stem_max
        for base, stride in zip(self.dims["stage_channels"], self.dims["stage_strides"]):
            cout = scale_channels(base, wm_max)
            blocks = [
                ElasticInvertedResidual(cin if j == 0 else cout, cout, expand_max, kernel_max,
                                        stride if j == 0 else 1, activation, f)
                for j in range(depth_max)
            ]
            stages.append(ElasticDepth(blocks))
            cin, widest = cout, max(widest, cout)
        self.stages = nn.ModuleList(stages)  # of ElasticDepth[ElasticInvertedResidual]
        self.head = ElasticConv2d(widest, head_channels, 1, factory=f, role="conv")
        self.head_bn = ElasticBatchNorm2d(head_channels, factory=f)
        self.classifier = ElasticLinear(head_channels, num_classes, True, f, role="head")
        self.set_arch(extreme_arch(space))

    @classmethod
    def default_space(cls, **kwargs: Any) -> SearchSpace:
        """3 stages, depth {1, 2, 3}, kernel {3, 5, 7}, expand {2, 3, 4}: sized for 8x8 digits and
        28x28 MNIST on CPU (keyword arguments go to ``mobilenet_v3_space``)."""
        args = {"name": "convnet_small", "n_stages": 3, "depth": (1, 2, 3), "kernel": (3, 5, 7), "expand": (2, 3, 4)}
        return mobilenet_v3_space(**{**args, **kwargs})

    def _apply_arch(self, arch: Arch) -> None:
        wm = float(arch["width_mult"]) if self.has_width_mult else 1.0
        stem = scale_channels(self.dims["stem_channels"], wm)
        self.stem.set_active(self.dims["in_channels"], stem, 3)
        self.stem_bn.set_active(stem)
        cin, plan = stem, []
        self.n_active_stages = len(arch["stages"])
        for stage, base, s_arch in zip(cast("list[ElasticDepth[ElasticInvertedResidual]]", self.stages), self.dims["stage_channels"], arch["stages"]):
            cout = scale_channels(base, wm)
            stage.set_depth(int(s_arch["depth"]))
            for j, b in enumerate(s_arch["blocks"]):
                plan.append(stage[j].set_active(cin if j == 0 else cout, cout, b["expand"], int(b["kernel"])))
            cin = cout
        self.head.set_active(cin, self.dims["head_channels"], 1)
        self._plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem_bn(self.stem(x)))
        for i in range(self.n_active_stages):
            x = self.stages[i](x)
        x = self.act(self.head_bn(self.head(x)))
        return self.classifier(x.mean((2, 3)))

    def _extract(self) -> PlainConvNet:
        dims = {k: v for k, v in self.dims.items() if k not in ("stage_channels", "stage_strides", "image_size")}
        dims.update(stem_channels=self.stem.out_channels, blocks=[dict(b) for b in self._plan])
        p = next(self.parameters())
        plain = PlainConvNet(dims, self.arch.to_dict()).to(device=p.device, dtype=p.dtype)
        self.stem.copy_to(plain.stem)
        self.stem_bn.copy_to(plain.stem_bn)
        stages = cast("list[ElasticDepth[ElasticInvertedResidual]]", self.stages)
        blocks = [stages[i][j] for i in range(self.n_active_stages) for j in range(stages[i].depth)]
        for elastic, plain_block in zip(blocks, plain.blocks):
            elastic.copy_to(plain_block)
        self.head.copy_to(plain.head)
        self.head_bn.copy_to(plain.head_bn)
        self.classifier.copy_to(plain.classifier)
        return plain

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """Random images ``(batch_size, in_channels, image_size, image_size)`` (fixed seed)."""
        g = torch.Generator().manual_seed(0)
        n = self.dims["image_size"]
        return torch.randn(batch_size, self.dims["in_channels"], n, n, generator=g).to(self._device())
