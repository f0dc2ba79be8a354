"""Elastic layers: Linear, Embedding, LayerNorm, and elastic depth.

Every elastic layer owns one ``WeightBank`` (made by a ``BankFactory``) holding the weight of
its largest shape. ``set_active(...)`` fixes the active sub-shape once per architecture and
stores the slice index; ``forward`` then asks ``bank(index)`` for the weight and runs one
ordinary op on it (``F.linear``, ``F.embedding``, ``F.layer_norm``). No per-step Python work
beyond that.

Slices always start at 0 (the first ``n`` rows/columns), so an active weight is a view of
the shared tensor with a row stride of the full width: BLAS reads it without a copy.

``to_plain()`` returns the ordinary ``torch.nn`` layer of the active sub-shape (weights
copied through the bank, so mixture banks collapse to one tensor); ``copy_to(module)``
fills an existing one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError

from .banks import BankFactory, WeightBank

# name -> activation module class; families and plain modules pick activations here.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "hardswish": nn.Hardswish,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of ``ACTIVATIONS``)."""
    cls = ACTIVATIONS.get(str(name))
    if cls is None:
        raise ArchlabError(f"activation: unknown {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return cls()


def _check(name: str, value: int, low: int, high: int) -> int:
    value = int(value)
    if not low <= value <= high:
        raise ArchlabError(f"{name}: {value} is outside the layer's range {low}..{high}")
    return value


def _factory(factory: BankFactory | None) -> BankFactory:
    return factory if factory is not None else BankFactory("entangled")


class ElasticModule(nn.Module):
    """Base of elastic layers: ``bank`` holds the weights, ``index`` the active slices."""

    bank: WeightBank
    index: tuple[slice, ...]
    # while a soft architecture is set (archlab.supernets.soft.ops): the binding that mixes
    soft: Any = None

    def active_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight, bias)`` of the active sub-shape, from the bank (soft: the mixed weight)."""
        if self.soft is not None:
            return self.soft.weight(self)
        return self.bank(self.index)

    def to_plain(self) -> nn.Module:  # pragma: no cover - every layer overrides it
        raise NotImplementedError

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> nn.Module:
        """Copy the active weight (and bias) into an ordinary layer of the active shape."""
        w, b = self.active_weight()
        # nn.Module's stubs type any attribute as Tensor | Module; these are the layer's parameters
        cast(torch.Tensor, module.weight).copy_(w)
        if b is not None:
            cast(torch.Tensor, module.bias).copy_(b)
        return module


class ElasticLinear(ElasticModule):
    """``F.linear`` with elastic input and output features (the first ``in``/``out`` ones)."""

    def __init__(
        self,
        in_max: int,
        out_max: int,
        bias: bool = True,
        factory: BankFactory | None = None,
        role: str = "linear",
        **init: Any,
    ) -> None:
        super().__init__()
        self.in_max, self.out_max, self.has_bias = int(in_max), int(out_max), bool(bias)
        self.bank = _factory(factory)((self.out_max, self.in_max), bias, role, **init)
        self.set_active(self.in_max, self.out_max)

    def set_active(self, in_features: int, out_features: int) -> None:
        self.in_features = _check("in_features", in_features, 1, self.in_max)
        self.out_features = _check("out_features", out_features, 1, self.out_max)
        self.index = (slice(0, self.out_features), slice(0, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.soft is not None:
            return self.soft(self, x)
        w, b = self.bank(self.index)
        return F.linear(x, w, b)

    def to_plain(self) -> nn.Linear:
        p = next(self.bank.parameters())
        plain = nn.Linear(self.in_features, self.out_features, bias=self.has_bias)
        return self.copy_to(plain.to(device=p.device, dtype=p.dtype))  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"in={self.in_features}/{self.in_max}, out={self.out_features}/{self.out_max}, bias={self.has_bias}"


class ElasticEmbedding(ElasticModule):
    """``F.embedding`` with an elastic embedding dimension (the first ``dim`` columns)."""

    def __init__(
        self,
        num_embeddings: int,
        dim_max: int,
        factory: BankFactory | None = None,
        role: str = "embed",
        std: float = 0.02,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.dim_max = int(num_embeddings), int(dim_max)
        init = partial(nn.init.normal_, std=std)
        self.bank = _factory(factory)((self.num_embeddings, self.dim_max), False, role, weight_init=init)
        self.set_active(self.dim_max)

    def set_active(self, dim: int) -> None:
        self.dim = _check("embedding_dim", dim, 1, self.dim_max)
        self.index = (slice(0, self.num_embeddings), slice(0, self.dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.soft is not None:
            return self.soft(self, ids)
        w, _ = self.bank(self.index)
        return F.embedding(ids, w)

    def to_plain(self) -> nn.Embedding:
        p = next(self.bank.parameters())
        plain = nn.Embedding(self.num_embeddings, self.dim).to(device=p.device, dtype=p.dtype)
        return self.copy_to(plain)  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, dim={self.dim}/{self.dim_max}"


class ElasticLayerNorm(ElasticModule):
    """``F.layer_norm`` over an elastic last dimension (the first ``dim`` features)."""

    def __init__(
        self, dim_max: int, eps: float = 1e-5, factory: BankFactory | None = None, role: str = "norm"
    ) -> None:
        super().__init__()
        self.dim_max, self.eps = int(dim_max), float(eps)
        self.bank = _factory(factory)(
            (self.dim_max,), True, role, weight_init=nn.init.ones_, bias_init=nn.init.zeros_
        )
        self.set_active(self.dim_max)

    def set_active(self, dim: int) -> None:
        self.dim = _check("normalized_shape", dim, 1, self.dim_max)
        self.shape = (self.dim,)
        self.index = (slice(0, self.dim),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.soft is not None:
            return self.soft(self, x)
        w, b = self.bank(self.index)
        return F.layer_norm(x, self.shape, w, b, self.eps)

    def to_plain(self) -> nn.LayerNorm:
        p = next(self.bank.parameters())
        plain = nn.LayerNorm(self.dim, eps=self.eps).to(device=p.device, dtype=p.dtype)
        return self.copy_to(plain)  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"dim={self.dim}/{self.dim_max}, eps={self.eps}"


B = TypeVar("B", bound=nn.Module)


class ElasticDepth(nn.ModuleList, Generic[B]):
    """Elastic depth: a list of blocks (all of type ``B``) of which the first ``depth`` run, in order."""

    soft: Any = None  # a SoftDepth (archlab.supernets.soft.ops) while a soft architecture is set

    if TYPE_CHECKING:  # ModuleList's stubs yield plain Modules; declare the blocks' type

        def __iter__(self) -> Iterator[B]: ...

        @overload
        def __getitem__(self, idx: slice) -> ElasticDepth[B]: ...

        @overload
        def __getitem__(self, idx: int) -> B: ...

        def __getitem__(self, idx: int | slice) -> B | ElasticDepth[B]: ...

    def __init__(self, blocks: Iterable[B]) -> None:
        super().__init__(blocks)
        self.depth = len(self)

    def set_depth(self, depth: int) -> None:
        self.depth = _check("depth", depth, 0, len(self))

    def active(self) -> list[B]:
        """The blocks that run for the active depth."""
        return list(self)[: self.depth]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.soft is not None:
            return self.soft(self, x)
        for i in range(self.depth):
            x = self[i](x)
        return x


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation module for ``name`` (stateless; safe to share)."""
    return make_activation(name)


__all__ = [
    "ACTIVATIONS",
    "ElasticDepth",
    "ElasticEmbedding",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticModule",
    "activation_fn",
    "make_activation",
]
