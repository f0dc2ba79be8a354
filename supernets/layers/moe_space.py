"""The search-space side of token-routed MoE layers: the ``moe_*`` parameter names, their
checks, the largest values a supernet must hold, and one layer's routing settings.

Names (per layer, in a ``layers`` block): ``moe_experts`` (integers >= 1; 1 is a dense FFN),
``moe_top_k`` (integers >= 1; clipped to the layer's expert count), ``moe_router`` (names
registered in ``archlab.supernets.routers``; default ``topk``), ``moe_top_p`` (numbers in
(0, 1]; default 1.0), ``moe_capacity`` (capacity factor, numbers > 0; absent: no limit) and
``moe_null`` (integers >= 0; zero-compute experts of ``null_experts``; default 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archlab.core.errors import ArchlabError
from archlab.spaces import PerLayer, SearchSpace
from archlab.spaces.errors import SpaceError

from ..routers import DEFAULT_ROUTER, ROUTERS, RouteSettings, router_class

MOE_EXPERTS = "moe_experts"
MOE_TOP_K = "moe_top_k"
MOE_ROUTER = "moe_router"
MOE_TOP_P = "moe_top_p"
MOE_CAPACITY = "moe_capacity"
MOE_NULL = "moe_null"
MOE_PARAMS = (MOE_EXPERTS, MOE_TOP_K, MOE_ROUTER, MOE_TOP_P, MOE_CAPACITY, MOE_NULL)
DEFAULT_TOP_K = 1


def find_moe_params(space: SearchSpace) -> list[str]:
    """Paths (``layers[i].moe_top_k``) of every ``moe_*`` parameter anywhere in ``space``."""
    found: list[str] = []

    def walk(block: Mapping[str, Any], prefix: str) -> None:
        for name, p in block.items():
            if isinstance(p, PerLayer):
                walk(p.params, f"{prefix}{name}[i].")
            elif name.startswith("moe_"):
                found.append(prefix + name)

    walk(space.params, "")
    return found


def reject_moe_params(space: SearchSpace, family: str) -> None:
    """Raise ``ArchlabError`` when ``space`` has ``moe_*`` parameters (``family`` lacks MoE)."""
    found = find_moe_params(space)
    if found:
        raise ArchlabError(
            f"{family}: search space {space.name!r} has the mixture-of-experts parameter {found[0]!r}, "
            "which this family does not support; MoE layers are available in: transformer_lm "
            f"(layers[i].{MOE_EXPERTS}, layers[i].{MOE_TOP_K})"
        )


def _values(param: Any) -> list[Any]:
    try:
        return list(param.values())
    except SpaceError:  # a continuous range has no value list
        return []


def _int_values(param: Any, where: str, low: int) -> list[int]:
    values = _values(param)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
        raise ArchlabError(f"{where}: allowed values are {param.allowed()}; must be integers >= {low}")
    return values


def _number_values(param: Any, where: str, rule: str, ok: Any) -> list[float]:
    values = _values(param)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(float(v)) for v in values):
        raise ArchlabError(f"{where}: allowed values are {param.allowed()}; must be numbers {rule}")
    return [float(v) for v in values]


@dataclass(frozen=True)
class MoELimits:
    """The largest MoE settings of a space: ``experts`` (0: no MoE), ``top_k``, ``null`` and
    the router families it may choose (``routers``)."""

    experts: int = 0
    top_k: int = 0
    null: int = 0
    routers: tuple[str, ...] = ()


def moe_space_limits(space: SearchSpace, family: str, block: str = "layers") -> MoELimits:
    """``MoELimits`` of ``space``'s ``block``; raises ``ArchlabError`` naming the field for
    ``moe_*`` names outside ``block`` or unknown, bad values, settings without
    ``moe_experts`` and ``moe_top_k`` values above the largest ``moe_experts``."""
    allowed = {f"{block}[i].{n}" for n in MOE_PARAMS}
    for path in find_moe_params(space):
        if path not in allowed:
            raise ArchlabError(
                f"{family}: parameter {path!r} is not a known MoE setting; allowed: {', '.join(sorted(allowed))}"
            )
    layer = space.params[block].params  # type: ignore[attr-defined]
    if MOE_EXPERTS not in layer:
        other = [n for n in MOE_PARAMS if n in layer]
        if other:
            raise ArchlabError(
                f"{block}[i].{other[0]}: needs {block}[i].{MOE_EXPERTS} in the same block (the number of experts)"
            )
        return MoELimits()
    experts_max = max(_int_values(layer[MOE_EXPERTS], f"{block}[i].{MOE_EXPERTS}", 1))
    top_k = DEFAULT_TOP_K
    if MOE_TOP_K in layer:
        top_ks = _int_values(layer[MOE_TOP_K], f"{block}[i].{MOE_TOP_K}", 1)
        if max(top_ks) > experts_max:
            raise ArchlabError(
                f"{block}[i].{MOE_TOP_K}: value {max(top_ks)} exceeds the largest {block}[i].{MOE_EXPERTS} "
                f"({experts_max}) and could never be active; allowed: integers 1..{experts_max} "
                "(a top-k above an architecture's own expert count is clipped to it)"
            )
        top_k = max(top_ks)
    routers: tuple[str, ...] = (DEFAULT_ROUTER,)
    if MOE_ROUTER in layer:
        names = _values(layer[MOE_ROUTER])
        for name in names or [None]:
            router_class(name, f"{block}[i].{MOE_ROUTER}")
        routers = tuple(dict.fromkeys(names))
    if MOE_TOP_P in layer:
        _number_values(layer[MOE_TOP_P], f"{block}[i].{MOE_TOP_P}", "in (0, 1]", lambda v: 0.0 < v <= 1.0)
    if MOE_CAPACITY in layer:
        _number_values(layer[MOE_CAPACITY], f"{block}[i].{MOE_CAPACITY}", "> 0 (capacity factor)", lambda v: 0.0 < v < float("inf"))
    null = max(_int_values(layer[MOE_NULL], f"{block}[i].{MOE_NULL}", 0)) if MOE_NULL in layer else 0
    return MoELimits(experts_max, top_k, null, routers)


def moe_limits(space: SearchSpace, family: str, block: str = "layers") -> tuple[int, int]:
    """``(largest moe_experts, largest moe_top_k)``; ``(0, 0)`` without MoE parameters (see
    ``moe_space_limits``, which checks every ``moe_*`` setting)."""
    lim = moe_space_limits(space, family, block)
    return lim.experts, lim.top_k


def active_top_k(experts: int, top_k: int) -> int:
    """The top-k that runs: ``min(top_k, experts)`` (the clipping policy)."""
    return max(1, min(int(top_k), int(experts)))


def layer_settings(layer: Mapping[str, Any], where: str = "layers[i]", clip: bool = True) -> tuple[str, RouteSettings]:
    """``(router name, RouteSettings)`` of one layer's arch or dims entry (defaults filled in,
    top-k clipped to the expert count when ``clip``); errors name ``where``'s field."""
    name = layer.get(MOE_ROUTER, DEFAULT_ROUTER)
    router_class(name, f"{where}.{MOE_ROUTER}")
    experts = layer.get(MOE_EXPERTS, 1)
    top_k = layer.get(MOE_TOP_K, DEFAULT_TOP_K)
    if clip and isinstance(experts, int) and isinstance(top_k, int) and not isinstance(top_k, bool):
        top_k = active_top_k(experts, top_k) if top_k >= 1 else top_k
    capacity = layer.get(MOE_CAPACITY)
    settings = RouteSettings(experts, top_k, layer.get(MOE_TOP_P, 1.0), capacity, layer.get(MOE_NULL, 0))
    return name, settings.check(where)


def settings_entry(name: str, settings: RouteSettings) -> dict[str, Any]:
    """The JSON ``dims`` entry of a routed layer (only the settings its router reads beyond
    the defaults, so a default ``topk`` layer stays ``{moe_experts, moe_top_k}``)."""
    entry: dict[str, Any] = {MOE_EXPERTS: settings.experts, MOE_TOP_K: settings.top_k}
    if name != DEFAULT_ROUTER:
        entry[MOE_ROUTER] = name
    if name == "top_p":
        entry[MOE_TOP_P] = settings.top_p
    if settings.capacity is not None:
        entry[MOE_CAPACITY] = settings.capacity
    if settings.null:
        entry[MOE_NULL] = settings.null
    return entry


__all__ = [
    "DEFAULT_TOP_K",
    "MOE_CAPACITY",
    "MOE_EXPERTS",
    "MOE_NULL",
    "MOE_PARAMS",
    "MOE_ROUTER",
    "MOE_TOP_K",
    "MOE_TOP_P",
    "ROUTERS",
    "MoELimits",
    "active_top_k",
    "find_moe_params",
    "layer_settings",
    "moe_limits",
    "moe_space_limits",
    "reject_moe_params",
    "settings_entry",
]
