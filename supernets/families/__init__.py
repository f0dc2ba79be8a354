"""Model families of elastic supernets, each module next to its plain twin (``*_plain``: what
``net.extract`` returns). ``FAMILIES`` (kept in ``archlab.supernets.base``) maps a name to its
class; importing this package registers the built-in families, their plain twins and their
soft appliers (``soft_appliers``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from archlab.core.errors import ArchlabError
from archlab.spaces import SearchSpace

from ..base import FAMILIES, Supernet, register_family
from . import soft_appliers  # noqa: F401  (registers the built-in soft appliers)
from .cell import CellNet
from .convnet import ConvNet
from .mlp import MLPNet
from .transformer import TransformerLM

for _cls in (TransformerLM, ConvNet, MLPNet, CellNet):
    register_family(_cls)


def make_supernet(family: str, space: SearchSpace | None = None, **kwargs: Any) -> Supernet:
    """Build the supernet of ``family`` over ``space`` (``None``: the family's default space)."""
    cls = FAMILIES.get(family)
    if cls is None:
        raise ArchlabError(f"family: unknown {family!r}; allowed: {', '.join(FAMILIES)}")
    # a family takes space=None (its default space), which the abstract base's __init__ does not
    return cast(Callable[..., Supernet], cls)(space, **kwargs)


__all__ = ["FAMILIES", "CellNet", "ConvNet", "MLPNet", "TransformerLM", "make_supernet", "register_family"]
