"""An experiment's search, on the top floor: the experiment turns itself into what
``archlab.search`` takes (a space, ``MetricSources``, settings, a storage and a run folder),
so the search package never sees it.

>>> study = search_experiment(load_experiment("digits_cnn"), {"n_trials": 20})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archlab.experiment import Experiment


def experiment_file_of(spec: str) -> str:
    """What a study records as its experiment file: ``FILE.py[:NAME]`` with the file's absolute
    path when ``spec`` names an existing file, else ``spec`` as given (a bundled example name)."""
    path, sep, name = spec.partition(":")
    return (str(Path(path).resolve()) + sep + name) if Path(path).is_file() else spec


def search_kwargs(experiment: Experiment, overrides: Mapping[str, Any] | None = None,
                  experiment_file: str | None = None) -> dict[str, Any]:
    """``archlab.search.run_search`` keyword arguments of ``experiment``: its space, its metric
    sources (recording ``experiment_file``), its run folder and ``experiment.search`` settings
    with the non-None ``overrides``."""
    settings = experiment.search_settings(dict(overrides or {}))
    return {"space": experiment.space, "sources": experiment.metric_sources(experiment_file),
            "run_dir": experiment.run_dir, **settings}


def search_experiment(experiment: Experiment, overrides: Mapping[str, Any] | None = None, *,
                      experiment_file: str | None = None, **options: Any) -> Any:
    """Run (or continue) ``experiment``'s search: ``run_search(**search_kwargs(...), **options)``
    (``options``: ``show_progress``, ``callbacks``, ``worker_recipe``); returns the study."""
    from archlab.search.runner import run_search

    return run_search(**search_kwargs(experiment, overrides, experiment_file), **options)


def oneshot_experiment(experiment: Experiment, method: str, options: Mapping[str, Any] | None = None, *,
                       storage: Any = None, seed: int | None = None, experiment_file: str | None = None,
                       evaluate: bool = True, show_progress: bool | None = None) -> tuple[Any, Any]:
    """One-shot search of ``experiment`` by ``method`` (``archlab.search.oneshot_study.run_oneshot``
    with its sources and settings); returns ``(study, result)``."""
    from archlab.search.oneshot_study import run_oneshot

    settings = experiment.search_settings({"storage": storage, "seed": seed})
    return run_oneshot(experiment.space, method, options, sources=experiment.metric_sources(experiment_file),
                       settings=settings, run_dir=experiment.run_dir, seed=seed, evaluate=evaluate,
                       show_progress=show_progress)


__all__ = ["experiment_file_of", "oneshot_experiment", "search_experiment", "search_kwargs"]
