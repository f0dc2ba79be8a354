"""What a search's built-in metrics are computed from: ``MetricSources`` and ``SearchContext``.

The search package knows spaces, objective callables, storages and a run folder, never the
experiment that made them. An experiment (one floor up, ``Experiment.metric_sources()``) or a
user's own code hands ``run_search`` a ``MetricSources``: plain callables and values, built
lazily, from which the built-ins (``inherited``, ``params``, ``measured_latency``,
``routing.*``, ...) take what they need. A built-in whose source is missing raises a
``SearchError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.core.layout import RunLayout
from archlab.spaces import SearchSpace

from .errors import SearchError

#: what a study may record about where its metric sources came from (``MetricSources.provenance``)
PROVENANCE_KEYS = ("experiment", "experiment_file", "experiment_sha256")


@dataclass(frozen=True)
class MetricSources:
    """Sources of the built-in metrics (every field optional).

    ``supernet``: returns the *trained* supernet (``inherited``, ``routing.*``); ``untrained``:
    returns a fresh supernet of the same family (``params`` counted on extracted subnets,
    ``measured_latency``); each is called at most once per search process. ``task``: an
    ``archlab.supernets.tasks`` Task (its ``metric`` and validation batches). ``model_kwargs``:
    the family's constructor arguments (dimensions such as ``vocab_size``, ``context``), which
    the analytic ``params``/``macs`` cost models read. ``name``: the study name when the search
    is given none. ``provenance``: extra values recorded in the study's ``archlab`` attributes
    (for example ``experiment``, ``experiment_file``, ``experiment_sha256``); informational only:
    nothing recorded there is ever imported or run.
    """

    supernet: Callable[[], Any] | None = None
    untrained: Callable[[], Any] | None = None
    task: Any = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("supernet", "untrained"):
            value = getattr(self, key)
            if value is not None and not callable(value):
                raise SearchError(f"MetricSources.{key}: expected a callable returning a supernet, got {type(value).__name__}")
        for key in ("model_kwargs", "provenance"):
            if not isinstance(getattr(self, key), Mapping):
                raise SearchError(f"MetricSources.{key}: expected a mapping, got {type(getattr(self, key)).__name__}")
        unknown = sorted(str(k) for k in self.provenance if k not in PROVENANCE_KEYS)
        if unknown:
            raise SearchError(f"MetricSources.provenance: unknown key {unknown[0]!r}; allowed: {', '.join(PROVENANCE_KEYS)}")

    def recorded(self) -> dict[str, Any]:
        """``{key: value or None}`` for every ``PROVENANCE_KEYS`` key (what the study records)."""
        return {k: self.provenance.get(k) for k in PROVENANCE_KEYS}


#: how to get metric sources, said in errors about a missing one
HOW = "pass run_search(sources=MetricSources(...)) or use `archlab search EXPERIMENT.py`"


@dataclass
class SearchContext:
    """What built-in objectives may use in one process: the space, the metric sources, the run
    folder's layout (``None`` without a run folder) and a per-process cache."""

    space: SearchSpace
    sources: MetricSources = field(default_factory=MetricSources)
    layout: RunLayout | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sources is None:
            self.sources = MetricSources()
        if not isinstance(self.sources, MetricSources):
            raise SearchError(f"sources: expected MetricSources, got {type(self.sources).__name__}")
        if self.layout is not None and not isinstance(self.layout, RunLayout):
            self.layout = RunLayout(Path(self.layout))

    def require_task(self, what: str) -> Any:
        """The task, or ``SearchError`` saying that objective ``what`` needs one."""
        if self.sources.task is None:
            raise SearchError(f"objective {what!r} needs a task in its metric sources ({HOW})")
        return self.sources.task

    def has_supernet(self, trained: bool = True) -> bool:
        """True when the sources can build the (trained, else untrained) supernet."""
        return (self.sources.supernet if trained else self.sources.untrained) is not None

    def supernet(self, trained: bool = True) -> Any:
        """The trained (or fresh) supernet in eval mode, built once per process."""
        key = "supernet" if trained else "supernet_untrained"
        if key not in self._cache:
            make = self.sources.supernet if trained else self.sources.untrained
            if make is None:
                field_name = "supernet" if trained else "untrained"
                what = "inherited" if trained else "params/measured_latency"
                raise SearchError(f"objective {what!r} needs MetricSources.{field_name} (a callable returning the "
                                  f"{'trained' if trained else 'untrained'} supernet; {HOW})")
            net = make()
            net.eval()
            self._cache[key] = net
        return self._cache[key]

    def predictor_path(self, kind: str = "latency") -> Path:
        """``<run folder>/predictors/<kind>.json``, or ``SearchError`` without a run folder."""
        if self.layout is None:
            raise SearchError(f"objective 'predicted_{kind}' needs a run folder holding predictors/{kind}.json "
                              "(run_search(run_dir=...))")
        return self.layout.predictor(kind)


__all__ = ["PROVENANCE_KEYS", "MetricSources", "SearchContext"]
