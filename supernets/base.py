"""``Supernet``: the base of every weight-sharing model family.

A family subclass declares ``family`` (its registry name) and ``requires`` (the parameter
names it reads from the space, nested for per-layer blocks), builds its elastic layers in
``__init__`` from the largest values of the space, and implements ``_apply_arch(arch)``
(set the active sub-shape of every layer, once per architecture), ``forward``,
``_extract()`` (a plain module of the active arch) and ``example_input``.

The base class validates architectures, keeps the active one, passes its normalised
encoding to the weight banks (mixture banks route on it), and serialises the constructor
arguments (``config`` / ``from_config``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Arch, PerLayer, SearchSpace
from archlab.spaces.errors import SpaceError

from .layers import banks
from .layers.banks import BankFactory
from .layers.moe import reject_moe_params

if TYPE_CHECKING:
    from archlab.spaces.soft import SoftLayout

CONFIG_FORMAT = 1

# requirement spec: name -> True (a scalar parameter) or a nested spec (a PerLayer block)
Requires = Mapping[str, Any]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` or ``"auto"``: ``cuda`` when available, else ``cpu``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ArchlabError(f"device: {device!r} is not a device; allowed: auto, cpu, cuda, cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArchlabError(f"device: {device!r} requested but CUDA is not available; use cpu or auto")
    return dev


def _describe(requires: Requires, prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in requires.items():
        if isinstance(v, Mapping):
            out.extend(_describe(v, f"{prefix}{k}[i]."))
        else:
            out.append(prefix + k)
    return out


def check_space(space: SearchSpace, requires: Requires, family: str) -> None:
    """Raise ``ArchlabError`` naming the first parameter ``requires`` lists that ``space`` lacks."""
    if not isinstance(space, SearchSpace):
        raise ArchlabError(f"{family}: space must be a SearchSpace, got {type(space).__name__}")
    expected = ", ".join(_describe(requires))

    def walk(block: Mapping[str, Any], req: Requires, prefix: str) -> None:
        for name, sub in req.items():
            p = block.get(name)
            where = f"{prefix}{name}"
            if p is None:
                raise ArchlabError(
                    f"{family}: search space {space.name!r} has no parameter {where!r}; "
                    f"the family expects: {expected}"
                )
            if isinstance(sub, Mapping):
                if not isinstance(p, PerLayer):
                    raise ArchlabError(f"{family}: parameter {where!r} must be a PerLayer block; the family expects: {expected}")
                walk(p.params, sub, f"{where}[i].")
            elif isinstance(p, PerLayer):
                raise ArchlabError(f"{family}: parameter {where!r} must be a single value, not a PerLayer block")

    walk(space.params, requires, "")


def max_value(param: Any, name: str) -> Any:
    """Largest allowed value of an ordered parameter (for sizing the supernet)."""
    try:
        return param.high()
    except SpaceError as exc:
        raise ArchlabError(f"{name}: needs ordered numeric values to size the supernet ({exc.reason})") from None


def extreme_arch(space: SearchSpace, which: str = "high") -> Arch:
    """``space.largest()`` (``which="high"``) or ``space.smallest()`` (``"low"``), checked;
    unordered categorical parameters (e.g. an activation) take their ``Choice`` default.
    The supernet starts with the largest arch."""
    if which not in ("high", "low"):
        raise ArchlabError(f"which: {which!r}; allowed: high, low")
    return space.validate(space.largest() if which == "high" else space.smallest(), check_constraints=False)


class Supernet(nn.Module):
    """A weight-sharing network over a ``SearchSpace``; ``set_arch`` picks the subnet that runs.

    Attributes: ``space``, ``sharing`` (the weight bank's name), ``family``, ``arch`` (active).
    """

    family: ClassVar[str] = ""
    requires: ClassVar[Requires] = {}
    # whether the family reads mixture-of-experts parameters (``moe_*``, archlab.supernets.layers.moe);
    # other families reject a space that has them instead of ignoring them
    supports_moe: ClassVar[bool] = False
    # set only while / after soft mode is used (archlab.supernets.soft.ops; hasattr tells)
    _soft_layout: SoftLayout
    _soft_previous: Arch | None

    def __init__(
        self,
        space: SearchSpace,
        dims: Mapping[str, Any] | None = None,
        sharing: str = "entangled",
        sharing_options: Mapping[str, Any] | None = None,
        roles: Any = None,
    ) -> None:
        super().__init__()
        name = self.family or type(self).__name__
        check_space(space, self.requires, name)
        if not self.supports_moe:
            reject_moe_params(space, name)
        self.space = space
        self.sharing = str(sharing)
        self.sharing_options = dict(sharing_options or {})
        self.roles = roles if roles is None or isinstance(roles, str) else list(roles)
        self.dims = dict(dims or {})
        self.bank_factory = BankFactory(
            self.sharing, encoding_size=space.encoding_size, roles=roles, options=self.sharing_options
        )
        self._arch: Arch | None = None

    # architecture -----------------------------------------------------------------
    @property
    def arch(self) -> Arch:
        """The active architecture."""
        if self._arch is None:
            raise ArchlabError("no architecture set yet; call net.set_arch(arch)")
        return self._arch

    def set_arch(self, arch: Mapping[str, Any] | str) -> Arch:
        """Validate ``arch`` against the space (``SpaceError`` naming the field otherwise),
        make it the active subnet and pass its normalised encoding to the weight banks."""
        valid = self.space.validate(arch, check_constraints=False)
        if self._arch is not None and valid.key == self._arch.key:
            return valid
        self._apply_arch(valid)
        self._arch = valid
        device = self._device()
        encoding = torch.as_tensor(self.space.encode(valid, normalized=True), device=device)
        banks.set_arch_encoding(self, encoding)
        return valid

    def _apply_arch(self, arch: Arch) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # moving to another device: re-send the encoding so routers' tensors follow
        out = super()._apply(fn, *args, **kwargs)
        arch = getattr(self, "_arch", None)
        if arch is not None:
            encoding = torch.as_tensor(self.space.encode(arch, normalized=True), device=self._device())
            banks.set_arch_encoding(self, encoding)
        return out

    # extraction -------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any] | str | None = None) -> nn.Module:
        """A standalone module of ordinary torch layers for ``arch`` (default: the active one),
        weights taken through the banks; eval-mode outputs equal the supernet's. The active
        architecture is restored afterwards."""
        previous = self._arch
        if arch is not None:
            self.set_arch(arch)
        try:
            plain = self._extract()
        finally:
            if previous is not None:
                self.set_arch(previous)
        plain.train(self.training)
        return plain

    def _extract(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def example_input(self, batch_size: int = 1) -> torch.Tensor:  # pragma: no cover - abstract
        """A valid input batch on the supernet's device (for profiling and export)."""
        raise NotImplementedError

    # persistence ------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able dict that rebuilds this (untrained) supernet with ``from_config``."""
        return {
            "archlab_supernet": CONFIG_FORMAT,
            "family": self.family,
            "space": json.loads(self.space.to_json()),
            "dims": dict(self.dims),
            "sharing": self.sharing,
            "sharing_options": dict(self.sharing_options),
            "roles": self.roles,
        }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | str) -> Supernet:
        """Rebuild a supernet from ``config()`` (a dict or its JSON text); weights are fresh."""
        if isinstance(cfg, str):
            try:
                cfg = json.loads(cfg)
            except json.JSONDecodeError as exc:
                raise ArchlabError(f"supernet config is not valid JSON: {exc}") from None
        if not isinstance(cfg, Mapping) or "family" not in cfg or "space" not in cfg:
            raise ArchlabError("supernet config: expected an object with keys family, space, dims, sharing")
        target: type[Supernet] = cls
        if cls is Supernet or not cls.family:
            target = FAMILIES.get(cfg["family"])  # type: ignore[assignment]
            if target is None:
                raise ArchlabError(f"family: unknown {cfg['family']!r}; allowed: {', '.join(FAMILIES)}")
        elif cfg["family"] != cls.family:
            raise ArchlabError(f"family: config is for {cfg['family']!r}, not {cls.family!r}")
        space = SearchSpace.from_json(cfg["space"])
        return target(
            space,
            **dict(cfg.get("dims", {})),
            sharing=cfg.get("sharing", "entangled"),
            sharing_options=cfg.get("sharing_options") or None,
            roles=cfg.get("roles"),
        )

    @classmethod
    def default_space(cls, **kwargs: Any) -> SearchSpace:  # pragma: no cover - abstract
        """A small ready space for this family (CPU-sized)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        arch = self.space.summary(self._arch) if self._arch is not None else "unset"
        return f"family={self.family}, sharing={self.sharing}, arch: {arch}"


# family name -> class; ``archlab.supernets.families`` registers the built-in families
FAMILIES: dict[str, type[Supernet]] = {}


def register_family(cls: type[Supernet]) -> type[Supernet]:
    """Class decorator: make a user's ``Supernet`` subclass available by its ``family`` name."""
    if not cls.family:
        raise ArchlabError(f"{cls.__name__}: set the class attribute `family` before registering it")
    FAMILIES[cls.family] = cls
    return cls


__all__ = ["FAMILIES", "Supernet", "check_space", "extreme_arch", "max_value", "pick_device", "register_family"]
