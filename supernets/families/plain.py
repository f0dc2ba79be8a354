"""Standalone subnets: ordinary torch layers only, rebuilt from a JSON ``dims`` dict.

``net.extract(arch)`` returns one of these with the active weights copied in;
``archlab.supernets.export`` saves/loads them without the supernet. Each class takes
``(dims, arch=None)``; ``subnet_config()`` gives ``{"family", "arch", "dims"}``.
``PLAIN`` maps family name to class; each family's twin lives next to it
(``transformer_plain``, ``convnet_plain``, ``mlp_plain``; ``cell`` holds its own) and
registers with ``@register_plain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from archlab.core.errors import ArchlabError


class PlainSubnet(nn.Module):
    """Base: keeps ``family``, ``dims`` (JSON) and ``arch`` (JSON-able dict or None)."""

    family: ClassVar[str] = ""

    def __init__(self, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.arch = dict(arch) if arch is not None else None

    def _get(self, key: str) -> Any:
        if key not in self.dims:
            raise ArchlabError(f"subnet config for {self.family!r}: dims has no {key!r}")
        return self.dims[key]

    def subnet_config(self) -> dict[str, Any]:
        return {"family": self.family, "arch": self.arch, "dims": self.dims}


PLAIN: dict[str, type[PlainSubnet]] = {}


def register_plain(cls: type[PlainSubnet]) -> type[PlainSubnet]:
    """Class decorator: make a user's plain subnet class loadable by ``load_subnet``."""
    PLAIN[cls.family] = cls
    return cls


def build_plain(family: str, dims: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> PlainSubnet:
    """An untrained plain subnet of ``family`` with ``dims``."""
    cls = PLAIN.get(family)
    if cls is None:
        raise ArchlabError(f"family: unknown {family!r}; allowed: {', '.join(PLAIN)}")
    try:
        return cls(dims, arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchlabError(f"subnet config for {family!r}: bad dims ({exc})") from None
