"""Token routers for mixture-of-experts layers: a registry (``ROUTERS``, ``register_router``)
and the built-in routers, one module each (``topk``, ``expert_choice``, ``top_p``,
``null_experts``, ``recurrent``, ``stochastic``, ``random_grow``). See ``base`` for the
interface. Every module of this package is imported here, so a new router is one new file
with a ``@register_router`` class (a router outside the package registers when its module is
imported)."""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    DEFAULT_ROUTER,
    ROUTERS,
    Dispatch,
    Router,
    RouteSettings,
    RoutingState,
    register_router,
    router_class,
    switch_load_balancing,
)
from .random_grow import set_progress
from .stochastic import clear_routing, symmetric_kl, thor_alpha, thor_loss

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DEFAULT_ROUTER",
    "ROUTERS",
    "Dispatch",
    "RouteSettings",
    "Router",
    "RoutingState",
    "clear_routing",
    "register_router",
    "router_class",
    "set_progress",
    "switch_load_balancing",
    "symmetric_kl",
    "thor_alpha",
    "thor_loss",
]
