"""Weight banks: where an elastic layer gets the weight of the active architecture.

An elastic layer (linear, conv, embedding, norm, ...) owns one ``WeightBank``. Each forward
it asks ``bank(index)`` for the weight (and bias) of its active sub-shape, ``index`` being one
``slice`` per weight dimension, and runs one ordinary op (``F.linear``, ``F.conv2d``) on the
result. The bank alone decides how that weight is made:

- ``entangled`` (``EntangledBank``): slice one shared tensor (plain weight entanglement);
- ``mos-layer`` / ``mos-neuron`` (``archlab.supernets.layers.mos``): a router maps the architecture
  encoding to mixing weights over expert tensors.

Supernets call ``set_arch_encoding`` on every bank when the architecture changes; banks that
do not route ignore it. New banks register with ``@register_bank("name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from archlab.core.errors import ArchlabError

Index = Sequence[slice]
Init = Callable[[torch.Tensor], Any]

BANKS: dict[str, type[WeightBank]] = {}

# Layer roles a supernet family tags its banks with; mixture banks pick layers by role.
# ("moe_router": the token router of a mixture-of-experts FFN, ``archlab.supernets.layers.moe``.)
ROLES = ("embed", "attn_qkv", "attn_out", "ffn_in", "ffn_out", "conv_expand", "conv_depthwise",
         "conv_project", "conv", "linear", "head", "norm", "moe_router")


def register_bank(name: str) -> Callable[[type[WeightBank]], type[WeightBank]]:
    """Class decorator: make a bank available as ``sharing=name``."""

    def deco(cls: type[WeightBank]) -> type[WeightBank]:
        cls.sharing = name
        BANKS[name] = cls
        return cls

    return deco


def default_weight_init(w: torch.Tensor) -> None:
    """nn.Linear / nn.Conv2d default: Kaiming-uniform with a = sqrt(5) on the full shape."""
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))


def default_bias_init(weight_shape: Sequence[int]) -> Init:
    fan_in = int(math.prod(weight_shape[1:])) or 1
    bound = 1.0 / math.sqrt(fan_in)
    return lambda b: nn.init.uniform_(b, -bound, bound)


class WeightBank(nn.Module):
    """Parameters of one elastic layer, served per active sub-shape.

    ``weight_shape`` is the full (largest) weight shape; ``bias`` whether there is a bias of
    size ``weight_shape[0]``; ``role`` tags the layer (one of ``ROLES``).
    """

    sharing: ClassVar[str] = ""

    def __init__(
        self,
        weight_shape: Sequence[int],
        bias: bool,
        role: str,
        weight_init: Init = default_weight_init,
        bias_init: Init | None = None,
    ) -> None:
        super().__init__()
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.has_bias = bool(bias)
        self.role = role
        self.weight_init = weight_init
        self.bias_init = bias_init or default_bias_init(self.weight_shape)

    # SliceAdamW support (archlab.supernets.training.optim): ``slice_params()`` names the tensors a forward
    # slices (weight, bias), ``slice_lead`` how many leading dimensions they have before the
    # layer's own (the expert axis of a mixture bank: 1). While a SliceAdamW is attached
    # (``_slice_tracker``, a weak reference) and grad mode is on, ``_served(index)`` gets the
    # slices from its tracker, so a step updates only the used box of them and their moments.
    slice_lead: ClassVar[int] = 0
    _slice_tracker: Any = None
    _slice_views: Any = None  # the tracker's cache of served views, per index

    def slice_params(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The (weight, bias) tensors a forward slices, or None (trained as ordinary parameters)."""
        return None

    def no_weight_decay(self) -> list[nn.Parameter]:
        """Parameters that get no weight decay although they are matrices (routers, stacked biases)."""
        return []

    def _served(self, index: tuple[slice, ...]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        ref = self._slice_tracker
        if ref is not None and torch.is_grad_enabled():
            tracker = ref()
            if tracker is not None:
                return tracker.take(self, index)
        return None

    def __getstate__(self) -> dict[str, Any]:
        # copies and pickles of the bank are not trained by the original's optimizer
        state = self.__dict__.copy()
        state.pop("_slice_tracker", None)
        state.pop("_slice_views", None)
        return state

    def set_arch_encoding(self, encoding: torch.Tensor | None) -> None:
        """Tell the bank the active architecture (normalised ``space.encode``); default: ignore."""

    def forward(self, index: Index) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight[index], bias[index[0]])`` for the active sub-shape (bias ``None`` if absent)."""
        raise NotImplementedError


@register_bank("entangled")
class EntangledBank(WeightBank):
    """Plain weight entanglement: every sub-shape is a slice of one shared tensor."""

    def __init__(self, weight_shape: Sequence[int], bias: bool, role: str, **kwargs: Any) -> None:
        super().__init__(weight_shape, bias, role, **kwargs)
        self.weight = nn.Parameter(torch.empty(self.weight_shape))
        self.bias = nn.Parameter(torch.empty(self.weight_shape[0])) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.weight_init(self.weight.data)
        if self.bias is not None:
            self.bias_init(self.bias.data)

    def slice_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight, self.bias

    def forward(self, index: Index) -> tuple[torch.Tensor, torch.Tensor | None]:
        ref = self._slice_tracker
        if ref is not None and torch.is_grad_enabled():
            tracker = ref()
            if tracker is not None:
                return tracker.take(self, tuple(index))
        w = self.weight[tuple(index)]
        b = self.bias[index[0]] if self.bias is not None else None
        return w, b


@dataclass
class BankFactory:
    """Makes the bank of each elastic layer of a supernet.

    ``sharing`` names the bank (``entangled``, ``mos-layer``, ``mos-neuron``, or any registered
    one); ``roles`` are the layer roles that get it (``None``: the bank's own default; other
    layers get ``entangled``); ``options`` go to the bank (experts, router size, ...);
    ``encoding_size`` is the width of the architecture encoding routers read.
    """

    sharing: str = "entangled"
    encoding_size: int = 0
    roles: Iterable[str] | str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sharing not in BANKS:
            raise ArchlabError(f"sharing: unknown weight bank {self.sharing!r}; allowed: {', '.join(sorted(BANKS))}")
        cls = BANKS[self.sharing]
        default_roles = getattr(cls, "default_roles", None)
        roles = self.roles if self.roles is not None else default_roles
        if roles == "all" or roles is None:
            self._roles = set(ROLES)
        else:
            self._roles = {roles} if isinstance(roles, str) else set(roles)
            unknown = self._roles - set(ROLES)
            if unknown:
                raise ArchlabError(f"roles: unknown layer role {sorted(unknown)[0]!r}; allowed: all, {', '.join(ROLES)}")

    def __call__(self, weight_shape: Sequence[int], bias: bool, role: str, **init: Any) -> WeightBank:
        if role not in ROLES:
            raise ArchlabError(f"role: unknown layer role {role!r}; allowed: {', '.join(ROLES)}")
        if role in self._roles and self.sharing != "entangled":
            # a registered sharing bank takes the factory's options (WeightBank's own __init__ does not)
            cls: Callable[..., WeightBank] = BANKS[self.sharing]
            bank = cls(weight_shape, bias, role, encoding_size=self.encoding_size, **self.options, **init)
        else:
            bank = EntangledBank(weight_shape, bias, role, **init)
        # a bank may pair with the one made just before it (a mixture bank's FFN-wide router)
        link = getattr(bank, "link_previous", None)
        if link is not None:
            link(getattr(self, "_previous", None))
        self._previous = bank
        return bank


def set_arch_encoding(module: nn.Module, encoding: torch.Tensor | None) -> None:
    """Pass the architecture encoding to every bank under ``module``."""
    for m in module.modules():
        if isinstance(m, WeightBank):
            m.set_arch_encoding(encoding)
