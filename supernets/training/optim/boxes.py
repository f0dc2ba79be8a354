"""Boxes: the used part of a tensor as one ``(start, stop)`` per dimension, and the helpers
the slice optimizers share (``archlab.supernets.training.optim``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Box = tuple[tuple[int, int], ...]  # (start, stop) per dimension


def box_of(index: Sequence[slice], shape: Sequence[int]) -> Box:
    """``index`` (one slice per leading dim, step 1) as (start, stop) per dim of ``shape``."""
    out = []
    for d, size in enumerate(shape):
        if d < len(index):
            start, stop, step = index[d].indices(size)
            if step != 1:
                raise ValueError(f"SliceAdamW: slice step {step} is not supported (dim {d})")
            out.append((start, max(start, stop)))
        else:
            out.append((0, size))
    return tuple(out)


def box_slices(box: Box, origin: Box | None = None) -> tuple[slice, ...]:
    """``box`` as slices (relative to the corner of ``origin`` when given)."""
    if origin is None:
        return tuple(slice(a, b) for a, b in box)
    return tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(box, origin))


def union(boxes: Sequence[Box]) -> Box:
    """The bounding box of ``boxes``."""
    return tuple((min(d[0] for d in dims), max(d[1] for d in dims)) for dims in zip(*boxes))


def is_full(box: Box, shape: Sequence[int]) -> bool:
    """Whether ``box`` covers the whole of a tensor of ``shape``."""
    return all(a == 0 and b == n for (a, b), n in zip(box, shape))


def copy_all(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """``dst[i].copy_(src[i])`` for every i, in one foreach call where torch has it."""
    if hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(dst, src)
    else:  # pragma: no cover - older torch
        for d, s in zip(dst, src):
            d.copy_(s)


def scalar_dtype() -> torch.dtype:
    """The dtype torch AdamW gives a non-fused ``step`` counter."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
