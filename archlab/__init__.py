"""archlab: a workbench for neural architecture search and routing experiments.

Subpackages: ``archlab.spaces`` (search-space DSL), ``archlab.supernets`` (weight-sharing
supernets), ``archlab.predictors`` (latency profiling and predictors), ``archlab.search``
(Optuna studies and results), ``archlab.app`` (the dashboard).

Heavy names (``Experiment``, ``load_subnet``) are imported lazily, so ``import archlab.spaces``
or ``import archlab.app`` never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Experiment": "archlab.experiment",
    "load_experiment": "archlab.experiment",
    "load_subnet": "archlab.supernets.export",
    "ArchlabError": "archlab.core.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'archlab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["ArchlabError", "Experiment", "__version__", "load_experiment", "load_subnet"]
