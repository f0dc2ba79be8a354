"""Sampler registry: names to Optuna samplers, always chosen explicitly (never Optuna's default).

``SAMPLERS[name](space, seed=..., n_objectives=..., **options)`` returns a sampler:

- ``nsga2`` (default): ``NSGAIISampler`` (``population_size`` option, default 50);
- ``nsga3``: ``NSGAIIISampler`` (reference-point based, for 3+ objectives);
- ``tpe``: multivariate, grouped ``TPESampler`` with the constant liar (conditional per-layer
  parameters and parallel workers);
- ``random``: ``RandomSampler``;
- ``gp``: ``GPSampler`` (Gaussian process; imports torch);
- ``predictor``: ``PredictorSampler``, predictor-in-the-loop search (LINAS-like);
- ``ehvi``: ``EHVISampler``, for expensive objectives: Gaussian processes with uncertainty,
  expected hypervolume improvement over candidates around the front (on the modelled
  objectives' rank scores; every third proposal a focus step on one of them), constraint
  feasibility model, never proposes an architecture the study has (``archlab.search.ehvi_sampler``); cheap
  objectives and constraint metrics (``cheap_metrics``) are passed to it as ``known``; its
  ``hints`` option (metric names, e.g. the zero-cost proxy ``synflow``, or callables) adds
  cheap per-architecture values to its models' inputs.

Constraints reach every sampler through ``trial.set_constraint`` (stored with the trial), so no
``constraints_func`` is passed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from archlab.spaces import SearchSpace

from .errors import SearchError


def _quiet(make: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


def _nsga2(space: SearchSpace, *, seed: int | None, n_objectives: int, **options: Any) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(options.pop("population_size", 50)), **options)


def _nsga3(space: SearchSpace, *, seed: int | None, n_objectives: int, **options: Any) -> Any:
    import optuna

    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=int(options.pop("population_size", 50)), **options)


def _tpe(space: SearchSpace, *, seed: int | None, n_objectives: int, **options: Any) -> Any:
    import optuna

    kw = {"multivariate": True, "group": True, "constant_liar": True, "n_startup_trials": 20, **options}
    return _quiet(lambda: optuna.samplers.TPESampler(seed=seed, **kw))


def _random(space: SearchSpace, *, seed: int | None, n_objectives: int, **options: Any) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed, **options)


def _gp(space: SearchSpace, *, seed: int | None, n_objectives: int, **options: Any) -> Any:
    import optuna

    return _quiet(lambda: optuna.samplers.GPSampler(seed=seed, **options))


def _predictor(space: SearchSpace, *, seed: int | None, n_objectives: int, **options: Any) -> Any:
    from .predictor_sampler import PredictorSampler

    return PredictorSampler(space, seed=seed, **options)


def _ehvi(space: SearchSpace, *, seed: int | None, n_objectives: int, **options: Any) -> Any:
    from .ehvi_sampler import EHVISampler

    return EHVISampler(space, seed=seed, **options)


SAMPLERS: dict[str, Callable[..., Any]] = {
    "nsga2": _nsga2,
    "nsga3": _nsga3,
    "tpe": _tpe,
    "random": _random,
    "gp": _gp,
    "predictor": _predictor,
    "ehvi": _ehvi,
}


def cheap_metrics(fns: dict[str, Any], names: list[str]) -> dict[str, Callable[..., Any]]:
    """The batch forms (``archs -> values``) of the metrics that are cheap to compute: built-ins
    marked with a ``batch`` attribute (``predicted_latency``: the fitted latency predictor;
    ``macs``, analytic ``params``), or a user's callable given one. The ``ehvi`` sampler gets
    them as ``known`` (computed for every candidate, not modelled) unless told otherwise.
    ``names``: the objectives and constrained metrics (other metrics are only recorded)."""
    return {n: fns[n].batch for n in names if n in fns and callable(getattr(fns[n], "batch", None))}


def check_sampler(name: str) -> str:
    """``name`` if it is a registered sampler, else ``SearchError`` listing the allowed ones."""
    if name not in SAMPLERS:
        raise SearchError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    return name


def make_sampler(name: str, space: SearchSpace, *, seed: int | None = None, n_objectives: int = 2,
                 options: dict[str, Any] | None = None) -> Any:
    """A fresh sampler called ``name`` (see ``SAMPLERS``); bad options raise ``SearchError``."""
    check_sampler(name)
    try:
        return SAMPLERS[name](space, seed=seed, n_objectives=n_objectives, **dict(options or {}))
    except TypeError as exc:
        raise SearchError(f"sampler {name!r}: bad option ({exc})") from None
