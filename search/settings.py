"""``experiment.search`` settings: the keys ``archlab search`` understands, checked.

Keys (all optional): ``objectives`` ({name: (direction, callable or built-in)}, default
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


def default_objectives(experiment: Any) -> dict[str, tuple[str, str]]:
    """The task's metric with inherited weights (named without ``val_``, in the task's
    direction) and predicted latency; ``DEFAULT_OBJECTIVES`` when there is no task."""
    task = getattr(experiment, "task", None)
    metric, direction = getattr(task, "metric", None), getattr(task, "metric_direction", None)
    if not isinstance(metric, str) or direction not in ("min", "max"):
        return dict(DEFAULT_OBJECTIVES)
    return {metric.removeprefix("val_"): (direction, "inherited"), "latency_ms": ("min", "predicted_latency")}


def _check_inherited_direction(experiment: Any, objectives: Any) -> None:
    """An ``inherited`` objective against the task's direction (minimising accuracy) is a mistake."""
    task = getattr(experiment, "task", None)
    want = getattr(task, "metric_direction", None)
    if want not in ("min", "max") or not isinstance(objectives, Mapping):
        return
    for name, spec in objectives.items():
        if spec == "inherited":
            spec = ("min", spec)
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[1] == "inherited"):
            continue
        got = {"minimize": "min", "maximize": "max"}.get(str(spec[0]).lower(), str(spec[0]).lower())
        if got in ("min", "max") and got != want:
            raise SearchError(f"objectives.{name}: 'inherited' is the task's {getattr(task, 'metric', '?')}, which is better "
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


def _routed(experiment: Any) -> bool:
    """True when the experiment's space has token-routed (``moe_*``) layers."""
    space = getattr(experiment, "space", None)
    if space is None:
        return False
    from archlab.supernets.moe_space import find_moe_params

    return bool(find_moe_params(space))


def search_settings(experiment: Any, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``run_search`` keyword arguments from ``experiment.search`` plus non-None ``overrides``."""
    raw = dict(getattr(experiment, "search", None) or {})
    unknown = sorted(k for k in raw if k not in KEYS)
    if unknown:
        raise SearchError(f"experiment.search: unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
    if "trials" in raw:
        if "n_trials" in raw:
            raise SearchError("experiment.search: give either 'trials' or 'n_trials', not both")
        raw["n_trials"] = raw.pop("trials")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    raw.setdefault("objectives", default_objectives(experiment))
    _check_inherited_direction(experiment, raw["objectives"])
    if "sampler" not in raw and _expensive(raw["objectives"]):
        raw["sampler"] = EXPENSIVE_SAMPLER
    if "metrics" not in raw and _expensive(raw["objectives"]) and _routed(experiment):
        from .objectives import routing_metrics

        raw["metrics"] = routing_metrics(experiment.space)  # recorded with every evaluated arch
    if "timeout" in raw:
        raw["timeout"] = parse_duration(raw["timeout"])
    for key in ("n_trials", "workers", "seed", "heartbeat_interval", "grace_period", "max_failures"):
        if key in raw and raw[key] is not None and (isinstance(raw[key], bool) or not isinstance(raw[key], int)):
            raise SearchError(f"experiment.search: {key} must be an integer, got {raw[key]!r}")
    return raw
