"""archlab.search: multi-objective architecture search on Optuna, and its read-only results.

Results API (no torch, used by the dashboard): ``list_studies``, ``load_trials``,
``pareto_front``, ``hypervolume``, ``hypervolume_history``, ``export_trials``.
Search: ``run_search`` (over a space, objectives, ``MetricSources``, a storage and a run
folder; never an experiment) and the sampler and objective registries (``SAMPLERS``,
``OBJECTIVES``). Names are imported lazily, so ``import archlab.search`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "list_studies": "archlab.search.results",
    "load_trials": "archlab.search.results",
    "pareto_front": "archlab.search.results",
    "hypervolume": "archlab.search.results",
    "hypervolume_history": "archlab.search.results",
    "export_trials": "archlab.search.results",
    "ResultsError": "archlab.search.results",
    "StorageError": "archlab.search.storage",
    "open_storage": "archlab.search.storage",
    "run_search": "archlab.search.runner",
    "MetricSources": "archlab.search.metric_sources",
    "SearchError": "archlab.search.errors",
    "TooManyFailures": "archlab.search.trial_guard",
    "SAMPLERS": "archlab.search.samplers",
    "make_sampler": "archlab.search.samplers",
    "OBJECTIVES": "archlab.search.objectives",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'archlab.search' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
