"""Token routers for mixture-of-experts layers: a registry (``ROUTERS``, ``register_router``)
and the built-in routers, one module each (``topk``, ``expert_choice``, ``top_p``,
``null_experts``, ``recurrent``, ``stochastic``, ``random_grow``). See ``base`` for the
interface."""

from __future__ import annotations

from . import expert_choice, null_experts, random_grow, recurrent, stochastic, top_p, topk  # noqa: F401  (register)
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
