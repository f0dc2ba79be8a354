"""Soft architectures on the weight bank: differentiable mixed ops without a second model.

``set_soft(net, probs)`` turns a supernet into the mixed network of a soft architecture
(``archlab.spaces.soft``: one probability vector per choice slot, here torch tensors that
may carry gradients to architecture parameters); ``clear_soft(net)`` returns it to its
discrete architecture. The discrete path is untouched: an elastic layer only checks that
its ``soft`` binding is ``None``.

Mixing rules (TangleNAS, Sukthanker et al. 2024, for entangled weights):

- a weight layer (linear, conv, embedding) asks its bank for the *full* weight and multiplies
  it by the probability-weighted sum of the zero-padded slice masks, then ONE op runs at the
  largest shape: ``W_mix = sum_c p_c pad(W[slice_c]) = W * sum_c p_c mask_c``. A layer whose
  shape depends on several choices (rows on one, columns on another, the kernel on a third)
  gets the outer product of the per-dimension masks, i.e. the mix over every combination;
  a dimension set by a joint of choices (a conv's hidden width = f(width_mult, expand)) mixes
  over the outer product of their probabilities;
- depth: the probability-weighted sum of the outputs after each allowed number of blocks;
- norms and activations carry no entangled op: LayerNorm mixes the outputs of each width's
  norm (zero-padded), BatchNorm runs on batch statistics (as DARTS' search does, running
  statistics untouched) with masked affine weights, a categorical activation mixes outputs;
- mixture-of-supernets banks are served through the same call; their routers read the
  expected encoding of the soft architecture (``SoftLayout.encoding_terms``, differentiable).

With one-hot probabilities every mix reduces to the discrete subnet, zero-padded: outputs
equal the discrete forward (tests check it per family).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces.soft import SoftLayout

from ..base import Supernet, extreme_arch
from ..layers import banks

Probs = Mapping[str, torch.Tensor]
# family name -> fn(net, probs): set the bindings of every layer of the net
SOFT_FAMILIES: dict[str, Callable[[Any, Probs], None]] = {}


def register_soft(family: str) -> Callable[[Callable[[Any, Probs], None]], Callable[[Any, Probs], None]]:
    """Decorator: the soft applier of a model family (sets every layer's soft binding)."""

    def deco(fn: Callable[[Any, Probs], None]) -> Callable[[Any, Probs], None]:
        SOFT_FAMILIES[family] = fn
        return fn

    return deco


# masks ----------------------------------------------------------------------------------
def joint(probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Flattened outer product of independent distributions (combined choices)."""
    out = probs[0]
    for p in probs[1:]:
        out = (out[:, None] * p[None, :]).reshape(-1)
    return out


def width_mask(size: int, probs: Sequence[torch.Tensor], values: Sequence[Sequence[Any]],
               width: Callable[..., int] = int) -> torch.Tensor:
    """``sum_combo p(combo) * 1[j < width(*combo)]`` over ``j < size``: the mix of prefix
    masks for a width set by one or several independent choices (``values[i]`` are the values
    of ``probs[i]``)."""
    p = joint(probs)
    widths = torch.tensor([int(width(*combo)) for combo in itertools.product(*values)], device=p.device)
    m = (torch.arange(size, device=p.device)[None, :] < widths[:, None]).to(p.dtype)
    return p @ m


def kernel_mask(kernel_max: int, probs: torch.Tensor, values: Sequence[int]) -> torch.Tensor:
    """``(K, K)`` mix of centre-crop masks of the kernel sizes ``values``."""
    ks = torch.tensor([int(k) for k in values], device=probs.device)
    r = torch.arange(kernel_max, device=probs.device)
    off = (kernel_max - ks[:, None]) // 2
    inside = ((r[None, :] >= off) & (r[None, :] < off + ks[:, None])).to(probs.dtype)  # (n, K)
    return torch.einsum("n,na,nb->ab", probs, inside, inside)


def masked(w: torch.Tensor, masks: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """``w`` times the outer product of per-dimension masks (``None``: that dimension is not
    elastic; a 2-D mask covers the two trailing kernel dimensions)."""
    full: torch.Tensor | None = None
    for d, m in enumerate(masks):
        if m is None:
            continue
        shape = [1] * w.dim()
        if m.dim() == 2:
            shape[d : d + 2] = list(m.shape)
        else:
            shape[d] = m.shape[0]
        m = m.to(w.dtype).view(shape)
        full = m if full is None else full * m
    return w if full is None else w * full


def _full(layer: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    return layer.bank(tuple(slice(0, s) for s in layer.bank.weight_shape))


# bindings: what an elastic layer runs while a soft architecture is set ------------------
class SoftWeight:
    """A weight layer's masks (rows, columns[, kernel]); ``weight`` is the entangled mix."""

    def __init__(self, *masks: torch.Tensor | None) -> None:
        self.masks = masks

    def weight(self, layer: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = _full(layer)
        w = masked(w, self.masks)
        if b is not None and self.masks and self.masks[0] is not None:
            b = b * self.masks[0].to(b.dtype)
        return w, b


class SoftLinear(SoftWeight):
    def __call__(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight(layer)
        return F.linear(x, w, b)


class SoftEmbedding(SoftWeight):
    def __init__(self, dim_mask: torch.Tensor | None) -> None:
        super().__init__(None, dim_mask)

    def __call__(self, layer: Any, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight(layer)[0])


class SoftConv2d(SoftWeight):
    def __call__(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight(layer)
        groups = 1 if layer.group_size is None else layer.in_max // layer.group_size
        return F.conv2d(x, w, b, layer.stride, layer.kernel_max // 2, 1, groups)


class SoftBatchNorm2d(SoftWeight):
    """Batch statistics, affine weights masked by the channel mix (running stats untouched)."""

    def __call__(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight(layer)
        return F.batch_norm(x, None, None, w, b, True, 0.0, layer.eps)


class SoftLayerNorm:
    """Mix of the outputs of the LayerNorm of each width ``values`` (zero-padded)."""

    def __init__(self, probs: torch.Tensor, values: Sequence[int]) -> None:
        self.probs, self.values = probs, [int(v) for v in values]

    def weight(self, layer: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _full(layer)

    def __call__(self, layer: Any, x: torch.Tensor) -> torch.Tensor:
        w, b = _full(layer)
        out = torch.zeros_like(x)
        for p, d in zip(self.probs, self.values):
            y = F.layer_norm(x[..., :d], (d,), w[:d], b[:d] if b is not None else None, layer.eps)
            out = out + p.to(x.dtype) * F.pad(y, (0, x.shape[-1] - d))
        return out


class SoftDepth:
    """Mix of the outputs after each allowed number of blocks (``values``)."""

    def __init__(self, probs: torch.Tensor, values: Sequence[int]) -> None:
        self.probs, self.values = probs, [int(v) for v in values]

    def __call__(self, blocks: Sequence[nn.Module], x: torch.Tensor,
                 step: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                 width: int | None = None) -> torch.Tensor:
        outs = {0: x}
        for i in range(max(self.values)):
            x = step(blocks[i], x) if step is not None else blocks[i](x)
            outs[i + 1] = x
        total = None
        for p, d in zip(self.probs, self.values):
            y = outs[d]
            if width is not None and y.shape[-1] < width:  # features last (MLP): zero-pad
                y = F.pad(y, (0, width - y.shape[-1]))
            total = p.to(y.dtype) * y if total is None else total + p.to(y.dtype) * y
        return total  # type: ignore[return-value]


class SoftActivation(nn.Module):
    """Mix of the outputs of categorical activation choices."""

    def __init__(self, probs: torch.Tensor, acts: Sequence[nn.Module]) -> None:
        super().__init__()
        self.probs, self.acts = probs, list(acts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(p.to(x.dtype) * a(x) for p, a in zip(self.probs, self.acts))


# entering and leaving soft mode ---------------------------------------------------------
class _SoftBound(Protocol):
    """A layer bound to a soft op (``soft``: the op, ``None`` when discrete)."""

    soft: Any


def _layout(net: Supernet) -> SoftLayout:
    layout = getattr(net, "_soft_layout", None)
    if layout is None or layout.space is not net.space:
        layout = SoftLayout(net.space)
        net._soft_layout = layout
    return layout


def expected_encoding(layout: SoftLayout, probs: Probs, normalized: bool = True) -> torch.Tensor:
    """Differentiable ``E[space.encode(arch, normalized)]`` under the slot distributions."""
    vecs = [probs[s.path] for s in layout.slots]
    feats: list[torch.Tensor] = []
    for factors in layout.encoding_terms[bool(normalized)]:
        v = None
        for j, coef in factors:
            t = vecs[j] @ torch.as_tensor(coef, dtype=vecs[j].dtype, device=vecs[j].device)
            v = t if v is None else v * t
        feats.append(cast(torch.Tensor, v))  # a feature has at least one factor
    return torch.stack(feats) if feats else torch.zeros(0)


def set_soft(net: Supernet, probs: Probs) -> None:
    """Make ``net`` compute the mixed network of the soft architecture ``probs`` (``{slot
    path: probability tensor}``, every slot of ``SoftLayout(net.space)``). Call again with new
    probabilities each step; ``clear_soft`` restores the discrete architecture."""
    apply = SOFT_FAMILIES.get(net.family)
    if apply is None:
        raise ArchlabError(f"soft architectures: family {net.family!r} has no soft mixing; "
                           f"families with one: {', '.join(sorted(SOFT_FAMILIES))}")
    layout = _layout(net)
    for s in layout.slots:
        p = probs.get(s.path)
        if p is None or p.shape != (s.size,):
            raise ArchlabError(f"soft architecture: slot {s.path!r} needs a vector of {s.size} probabilities")
    if not hasattr(net, "_soft_previous"):
        net._soft_previous = net._arch
    net._apply_arch(extreme_arch(net.space))  # every layer at its largest shape
    apply(net, probs)
    banks.set_arch_encoding(net, expected_encoding(layout, probs).to(net._device()))


def clear_soft(net: Supernet) -> None:
    """Leave soft mode: drop every binding and re-apply the discrete architecture."""
    for m in net.modules():
        if getattr(m, "soft", None) is not None:
            cast(_SoftBound, m).soft = None
    if hasattr(net, "_soft_previous"):
        previous = net._soft_previous
        del net._soft_previous
        net._arch = None
        if previous is not None:
            net.set_arch(previous)


def is_soft(net: nn.Module) -> bool:
    """Whether ``net`` is in soft mode."""
    return hasattr(net, "_soft_previous")


def one_hot_probs(net: Supernet, arch: Any, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """``{path: tensor}`` of the one-hot soft architecture of ``arch`` on the net's device."""
    sa = _layout(net).one_hot(arch)
    return {s.path: torch.as_tensor(v, dtype=dtype, device=net._device())
            for s, v in zip(sa.layout.slots, sa.vectors)}


__all__ = [
    "SOFT_FAMILIES", "SoftActivation", "SoftBatchNorm2d", "SoftConv2d", "SoftDepth", "SoftEmbedding",
    "SoftLayerNorm", "SoftLinear", "SoftWeight", "clear_soft", "expected_encoding", "is_soft", "joint",
    "kernel_mask", "masked", "one_hot_probs", "register_soft", "set_soft", "width_mask",
]
