"""Search settings (an experiment's ``search`` dict): the keys ``archlab search`` understands, checked.

``search_settings(raw, overrides, task_metric=..., space=...)`` takes plain values: the raw
settings, the task's metric and direction and the space; no experiment (``Experiment.search_settings()``
passes its own). Keys (all optional): ``objectives`` ({name: (direction, callable or built-in)}, default
the task's own metric with inherited weights in its direction plus predicted latency, e.g.
``{"accuracy": ("max", "inherited"), "latency_ms": ("min", "predicted_latency")}`` for a
classification task, ``{"loss": ("min", "inherited"), ...}`` for a language model), ``metrics``
(default: ``routing_metrics(space)`` when the space has token-routed layers and an objective is
``inherited``, so every evaluated arch keeps its routing statistics),
``constraints`` ({metric: upper bound}), ``n_trials`` (alias ``trials``), ``timeout``
(seconds or ``"8h"``/``"30m"``/``"1h30m"``), ``sampler`` (default ``ehvi`` when an objective
is ``inherited``, else run_search's ``nsga2``), ``sampler_options``, ``storage``, ``study_name``,
``seed``, ``workers``, ``heartbeat_interval``, ``grace_period``, ``max_failures`` (failed trials
that stop a run; default ``max(10, n_trials)``), ``count`` (``"trials"`` or ``"distinct"``: what
``n_trials`` counts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from archlab.spaces import SearchSpace

from .errors import SearchError

DEFAULT_OBJECTIVES = {"error": ("min", "inherited"), "latency_ms": ("min", "predicted_latency")}
KEYS = (
    "objectives", "metrics", "constraints", "n_trials", "trials", "timeout", "sampler",
    "sampler_options", "storage", "study_name", "seed", "workers", "heartbeat_interval",
    "grace_period", "max_failures", "count",
)  # fmt: skip
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or text like ``"8h"``, ``"30m"``, ``"1h30m"``, ``"90s"``, ``"45"``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise SearchError(f"timeout must be positive, got {value}")
        return float(value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return parse_duration(float(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise SearchError(f"timeout {value!r}: expected seconds or a duration like 8h, 30m, 1h30m, 90s")
    return parse_duration(sum(float(a) * _UNITS[b] for a, b in parts))


TaskMetric = tuple[str, str]  # (the task's metric name, "min" or "max")


def _known(task_metric: TaskMetric | None) -> TaskMetric | None:
    """``task_metric`` when it is a usable ``(name, "min"|"max")`` pair, else None."""
    if task_metric is None:
        return None
    metric, direction = task_metric
    return (metric, direction) if isinstance(metric, str) and direction in ("min", "max") else None


def default_objectives(task_metric: TaskMetric | None = None) -> dict[str, tuple[str, str]]:
    """The task's metric with inherited weights (named without ``val_``, in the task's
    direction) and predicted latency; ``DEFAULT_OBJECTIVES`` when there is no task metric."""
    known = _known(task_metric)
    if known is None:
        return dict(DEFAULT_OBJECTIVES)
    metric, direction = known
    return {metric.removeprefix("val_"): (direction, "inherited"), "latency_ms": ("min", "predicted_latency")}


def _check_inherited_direction(task_metric: TaskMetric | None, objectives: Any) -> None:
    """An ``inherited`` objective against the task's direction (minimising accuracy) is a mistake."""
    known = _known(task_metric)
    if known is None or not isinstance(objectives, Mapping):
        return
    metric, want = known
    for name, spec in objectives.items():
        if spec == "inherited":
            spec = ("min", spec)
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[1] == "inherited"):
            continue
        got = {"minimize": "min", "maximize": "max"}.get(str(spec[0]).lower(), str(spec[0]).lower())
        if got in ("min", "max") and got != want:
            raise SearchError(f"objectives.{name}: 'inherited' is the task's {metric}, which is better "
                              f"{'higher' if want == 'max' else 'lower'}; direction must be {want!r}, got {spec[0]!r}")


#: the sampler a search gets by default when an objective is expensive to evaluate (the
#: supernet's metric with inherited weights): see ``archlab.search.ehvi_sampler``
EXPENSIVE_SAMPLER = "ehvi"


def _expensive(objectives: Any) -> bool:
    """True when an objective is the ``inherited`` built-in (a forward pass over validation data)."""
    if not isinstance(objectives, Mapping):
        return False
    specs = [spec[1] if isinstance(spec, (tuple, list)) and len(spec) == 2 else spec for spec in objectives.values()]
    return any(isinstance(s, str) and s == "inherited" for s in specs)


def _routed(space: SearchSpace | None) -> bool:
    """True when ``space`` has token-routed (``moe_*``) layers."""
    if space is None:
        return False
    from archlab.supernets.layers.moe_space import find_moe_params

    return bool(find_moe_params(space))


def search_settings(settings: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None, *,
                    task_metric: TaskMetric | None = None, space: SearchSpace | None = None,
                    where: str = "search settings") -> dict[str, Any]:
    """``run_search`` keyword arguments from the raw ``settings`` plus non-None ``overrides``.

    ``task_metric``: ``(metric, "min"|"max")`` of the task the ``inherited`` built-in scores
    (sets the default objectives and checks their direction); ``space``: the searched space
    (a routed space records its routing metrics by default); ``where`` names the settings in
    errors (``experiment.search``)."""
    if settings is not None and not isinstance(settings, Mapping):
        raise SearchError(f"{where}: expected a dict of settings, got {type(settings).__name__}")
    raw = dict(settings or {})
    unknown = sorted(k for k in raw if k not in KEYS)
    if unknown:
        raise SearchError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
    if "trials" in raw:
        if "n_trials" in raw:
            raise SearchError(f"{where}: give either 'trials' or 'n_trials', not both")
        raw["n_trials"] = raw.pop("trials")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    raw.setdefault("objectives", default_objectives(task_metric))
    _check_inherited_direction(task_metric, raw["objectives"])
    if "sampler" not in raw and _expensive(raw["objectives"]):
        raw["sampler"] = EXPENSIVE_SAMPLER
    if "metrics" not in raw and _expensive(raw["objectives"]) and space is not None and _routed(space):
        from .objectives import routing_metrics

        raw["metrics"] = routing_metrics(space)  # recorded with every evaluated arch
    if "timeout" in raw:
        raw["timeout"] = parse_duration(raw["timeout"])
    for key in ("n_trials", "workers", "seed", "heartbeat_interval", "grace_period", "max_failures"):
        if key in raw and raw[key] is not None and (isinstance(raw[key], bool) or not isinstance(raw[key], int)):
            raise SearchError(f"{where}: {key} must be an integer, got {raw[key]!r}")
    return raw
