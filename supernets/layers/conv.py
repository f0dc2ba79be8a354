"""Elastic convolution and batch normalisation.

- ``ElasticConv2d``: elastic input/output channels (the first ``n``), elastic kernel size by
  centre crop of the largest kernel (odd sizes, "same" padding ``k // 2``), dense, grouped
  (fixed ``group_size`` input channels per group, so the number of groups follows the active
  width) or depthwise (``group_size=1``, as many output channels as input channels).
- ``ElasticBatchNorm2d``: affine weights from a bank, running statistics as full-width
  buffers of which the active prefix is used and updated.
- ``recalibrate_batchnorm(net, batches, arch=None)``: reset and re-estimate the running
  statistics of the active architecture (inherited statistics belong to other archs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError

from .banks import BankFactory
from .elastic import ElasticModule, _check, _factory


class ElasticConv2d(ElasticModule):
    """``F.conv2d`` with elastic channels and a centre-cropped elastic kernel.

    ``group_size=None``: dense; ``group_size=g``: ``in // g`` groups; ``group_size=1``:
    depthwise (``out_max`` must equal ``in_max``; the active out equals the active in).
    """

    def __init__(
        self,
        in_max: int,
        out_max: int,
        kernel_max: int,
        stride: int = 1,
        group_size: int | None = None,
        bias: bool = False,
        factory: BankFactory | None = None,
        role: str = "conv",
        **init: Any,
    ) -> None:
        super().__init__()
        if int(kernel_max) % 2 != 1:
            raise ArchlabError(f"kernel_max: {kernel_max} must be odd (centre crop, same padding)")
        if group_size == 1 and int(out_max) != int(in_max):
            raise ArchlabError(f"depthwise conv needs out_max == in_max, got {out_max} != {in_max}")
        self.in_max, self.out_max, self.kernel_max = int(in_max), int(out_max), int(kernel_max)
        self.stride, self.group_size, self.has_bias = int(stride), group_size, bool(bias)
        per_group = self.in_max if group_size is None else int(group_size)
        shape = (self.out_max, per_group, self.kernel_max, self.kernel_max)
        self.bank = _factory(factory)(shape, bias, role, **init)
        self.set_active(self.in_max, self.out_max, self.kernel_max)

    @property
    def depthwise(self) -> bool:
        return self.group_size == 1

    def set_active(self, in_channels: int, out_channels: int | None = None, kernel: int | None = None) -> None:
        """Fix the active input/output channels and kernel size (``None``: keep / follow in)."""
        self.in_channels = _check("in_channels", in_channels, 1, self.in_max)
        if self.depthwise:
            out_channels = self.in_channels
        self.out_channels = _check("out_channels", out_channels or self.out_max, 1, self.out_max)
        k = _check("kernel", kernel if kernel is not None else getattr(self, "kernel", self.kernel_max), 1, self.kernel_max)
        if k % 2 != 1:
            raise ArchlabError(f"kernel: {k} must be odd")
        self.kernel, self.padding = k, k // 2
        if self.group_size is None:
            self.groups, per_group = 1, self.in_channels
        else:
            if self.in_channels % self.group_size:
                raise ArchlabError(f"in_channels: {self.in_channels} is not a multiple of group_size {self.group_size}")
            self.groups, per_group = self.in_channels // self.group_size, self.group_size
            if self.out_channels % self.groups:
                raise ArchlabError(f"out_channels: {self.out_channels} is not a multiple of the {self.groups} groups")
        off = (self.kernel_max - k) // 2
        crop = slice(off, off + k)
        self.index = (slice(0, self.out_channels), slice(0, per_group), crop, crop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.soft is not None:
            return self.soft(self, x)
        w, b = self.bank(self.index)
        return F.conv2d(x, w, b, self.stride, self.padding, 1, self.groups)

    def to_plain(self) -> nn.Conv2d:
        p = next(self.bank.parameters())
        plain = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel, self.stride, self.padding,
            groups=self.groups, bias=self.has_bias,
        )
        return self.copy_to(plain.to(device=p.device, dtype=p.dtype))  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return (
            f"in={self.in_channels}/{self.in_max}, out={self.out_channels}/{self.out_max}, "
            f"kernel={self.kernel}/{self.kernel_max}, stride={self.stride}, groups={self.groups}"
        )


class ElasticBatchNorm2d(ElasticModule):
    """``F.batch_norm`` over the first ``channels`` channels; the running statistics of the
    active prefix are used (eval) and updated in place (training), the rest untouched."""

    running_mean: torch.Tensor  # buffers (register_buffer in __init__)
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(
        self,
        channels_max: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        factory: BankFactory | None = None,
        role: str = "norm",
    ) -> None:
        super().__init__()
        self.channels_max, self.eps, self.momentum = int(channels_max), float(eps), momentum
        self.bank = _factory(factory)(
            (self.channels_max,), True, role, weight_init=nn.init.ones_, bias_init=nn.init.zeros_
        )
        self.register_buffer("running_mean", torch.zeros(self.channels_max))
        self.register_buffer("running_var", torch.ones(self.channels_max))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.set_active(self.channels_max)

    def set_active(self, channels: int) -> None:
        self.channels = _check("channels", channels, 1, self.channels_max)
        self.index = (slice(0, self.channels),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.soft is not None:
            return self.soft(self, x)
        w, b = self.bank(self.index)
        c = self.channels
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], w, b, True, factor, self.eps)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], w, b, False, 0.0, self.eps)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> nn.Module:
        super().copy_to(module)
        c = self.channels
        # a plain BatchNorm2d tracking running stats; nn.Module's stubs give Tensor | Module
        cast(torch.Tensor, module.running_mean).copy_(self.running_mean[:c])
        cast(torch.Tensor, module.running_var).copy_(self.running_var[:c])
        cast(torch.Tensor, module.num_batches_tracked).copy_(self.num_batches_tracked)
        return module

    def to_plain(self) -> nn.BatchNorm2d:
        p = next(self.bank.parameters())
        plain = nn.BatchNorm2d(self.channels, eps=self.eps, momentum=self.momentum)
        return self.copy_to(plain.to(device=p.device, dtype=p.dtype))  # type: ignore[return-value]

    @torch.no_grad()
    def reset_active_stats(self) -> None:
        """Zero mean / unit variance for the active channels; others keep theirs."""
        self.running_mean[: self.channels].zero_()
        self.running_var[: self.channels].fill_(1.0)
        self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return f"channels={self.channels}/{self.channels_max}, eps={self.eps}, momentum={self.momentum}"


@torch.no_grad()
def recalibrate_batchnorm(
    net: nn.Module, batches: Iterable[Any], arch: Any = None, max_batches: int | None = None
) -> nn.Module:
    """Re-estimate BatchNorm running statistics of the active (or given) architecture.

    Resets the active statistics of every ``ElasticBatchNorm2d`` and ``nn.BatchNorm*`` under
    ``net``, then runs ``batches`` (tensors, or ``(x, y)`` pairs of which ``x`` is used) in
    training mode without gradients, averaging the batch statistics equally (cumulative
    moving average). Training mode and momenta are restored. ``arch`` (optional) is set
    first with ``net.set_arch``. Returns ``net``.
    """
    if arch is not None:
        net.set_arch(arch)  # type: ignore[operator]
    norms = [m for m in net.modules() if isinstance(m, (ElasticBatchNorm2d, nn.modules.batchnorm._BatchNorm))]
    saved = [(m, m.momentum) for m in norms]
    was_training = net.training
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    for m in norms:
        if isinstance(m, ElasticBatchNorm2d):
            m.reset_active_stats()
        else:
            m.reset_running_stats()
        m.momentum = None
    seen = 0
    try:
        net.train()
        for batch in batches:
            if max_batches is not None and seen >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            net(x.to(device))
            seen += 1
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        net.train(was_training)
    if seen == 0:
        raise ArchlabError("recalibrate_batchnorm: batches is empty; pass at least one batch")
    return net


__all__ = ["ElasticBatchNorm2d", "ElasticConv2d", "recalibrate_batchnorm"]
