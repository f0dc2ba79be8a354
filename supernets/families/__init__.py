"""Model families of elastic supernets: ``FAMILIES`` maps a name to its class."""

from __future__ import annotations

from typing import Any

from archlab.core.errors import ArchlabError
from archlab.spaces import SearchSpace

from ..base import Supernet
from .cell import CellNet
from .convnet import ConvNet
from .mlp import MLPNet
from .transformer import TransformerLM

FAMILIES: dict[str, type[Supernet]] = {
    "transformer_lm": TransformerLM,
    "convnet": ConvNet,
    "mlp": MLPNet,
    "cell": CellNet,
}


def register_family(cls: type[Supernet]) -> type[Supernet]:
    """Class decorator: make a user's ``Supernet`` subclass available by its ``family`` name."""
    if not cls.family:
        raise ArchlabError(f"{cls.__name__}: set the class attribute `family` before registering it")
    FAMILIES[cls.family] = cls
    return cls


def make_supernet(family: str, space: SearchSpace | None = None, **kwargs: Any) -> Supernet:
    """Build the supernet of ``family`` over ``space`` (``None``: the family's default space)."""
    cls = FAMILIES.get(family)
    if cls is None:
        raise ArchlabError(f"family: unknown {family!r}; allowed: {', '.join(FAMILIES)}")
    return cls(space, **kwargs)


__all__ = ["FAMILIES", "CellNet", "ConvNet", "MLPNet", "TransformerLM", "make_supernet", "register_family"]
