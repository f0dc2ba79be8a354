"""Objectives and metrics of a search: user callables and built-ins, by name.

An objective is ``(direction, source)``: ``direction`` is ``"min"``/``"minimize"`` or
``"max"``/``"maximize"``; ``source`` is a callable ``arch -> float`` or the name of a built-in
metric from ``OBJECTIVES``:

- ``inherited``: the supernet's metric with inherited weights (``task.metric``; BatchNorm
  recalibrated), cached by ``arch.key``. Needs ``MetricSources.supernet`` and ``.task``.
- ``predicted_latency`` (ms): the fitted ``LatencyPredictor`` at
  ``<run_dir>/predictors/latency.json``.
- ``measured_latency`` (ms): the extracted subnet timed on this machine (median of repeats
  after warm-up, batch 1); for small budgets.
- ``params``: parameter count; ``macs``: multiply-accumulates per example (per token for
  sequence models), from the analytic cost model of the space's family, or counted on the
  extracted subnet (params) when ``MetricSources.untrained`` is given.
- ``synflow``: the log SynFlow score of the arch's subnet of the untrained supernet, a
  zero-cost proxy of its accuracy (``archlab.supernets.ranking.zero_cost``); needs
  ``MetricSources.untrained``. Meant as a hint of the ``ehvi`` sampler
  (``sampler_options={"hints": ["synflow"]}``) rather than as an objective.
- ``routing.<stat>`` and ``routing.layers.<i>.<stat>``: token-routing metrics of the arch
  with inherited weights (``archlab.supernets.layers.routing_metrics``), recorded whenever
  ``inherited`` evaluates an MoE net; ``routing_metrics(space)`` lists them for ``metrics=``.

Built-ins are made lazily by factories taking a ``SearchContext`` (the space, the
``MetricSources`` and the run folder's layout: ``archlab.search.metric_sources``); torch is
imported only by the ones that need it. No experiment is involved: whoever calls
``run_search`` turns theirs into metric sources.
"""

from __future__ import annotations

import hashlib
import inspect
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from archlab.spaces import Arch, SearchSpace

from .errors import SearchError
from .metric_sources import SearchContext

Direction = Literal["minimize", "maximize"]
DIRECTIONS: dict[str, Direction] = {"min": "minimize", "minimize": "minimize", "max": "maximize", "maximize": "maximize"}

MetricFn = Callable[[Arch], float]


def _inherited(ctx: SearchContext) -> MetricFn:
    from archlab.supernets.training.evaluation import evaluate

    task = ctx.require_task("inherited")
    if not ctx.has_supernet(True):
        ctx.supernet(True)  # raises now, naming the missing source, rather than in every trial
    metric = str(task.metric)
    cache: dict[str, float] = {}

    def fn(arch: Arch) -> float:
        if arch.key not in cache:
            out = evaluate(ctx.supernet(True), task, arch)
            _record_routing(ctx, arch)
            for k in (metric, metric.removeprefix("val_")):
                if k in out:
                    cache[arch.key] = float(out[k])
                    break
            else:
                raise SearchError(f"evaluate() returned {sorted(out)}, not the task metric {metric!r}")
        return cache[arch.key]

    return fn


ROUTING_BATCHES = 2


def _record_routing(ctx: SearchContext, arch: Arch) -> dict[str, float]:
    """Routing metrics of ``arch`` (``archlab.supernets.layers.routing_metrics.flat_metrics``, on the
    first ``ROUTING_BATCHES`` validation batches) plus ``routing.active_macs`` /
    ``routing.active_params`` (per token, counting only the experts tokens used, measured on
    the first batch: ``active_costs``), cached by ``arch.key``; empty for nets without
    token-routed layers. Read by the ``routing.*`` built-in metrics (usable as objectives)."""
    cache = ctx._cache.setdefault("routing", {})
    if arch.key not in cache:
        net = ctx.supernet(True)
        flat: dict[str, float] = {}
        if getattr(net, "has_moe", False):
            from archlab.supernets.layers.routing_metrics import (
                active_costs,
                flat_metrics,
                measure_routing,
            )
            from archlab.supernets.tasks.base import model_device

            task = ctx.require_task("routing")
            previous = getattr(net, "_arch", None)
            net.set_arch(arch)
            device = model_device(net)
            batches = [x.to(device) for x, _ in task.eval_batches("val", ROUTING_BATCHES)]
            flat = flat_metrics(measure_routing(net, batches))
            costs = active_costs(net.extract(arch), batches[0])
            flat.update({"routing.active_macs": costs["macs_per_token"], "routing.active_params": costs["active_params"]})
            if previous is not None:
                net.set_arch(previous)
        cache[arch.key] = flat
    return cache[arch.key]


def _routing(name: str) -> Callable[[SearchContext], MetricFn]:
    """Built-in ``routing.<stat>`` / ``routing.layers.<i>.<stat>``: the routing metric of the
    arch with inherited weights (NaN where the arch has no such layer or statistic)."""

    def factory(ctx: SearchContext) -> MetricFn:
        def fn(arch: Arch) -> float:
            return float(_record_routing(ctx, arch).get(name, float("nan")))

        return fn

    return factory


def routing_metrics(space: SearchSpace, experts: int | None = None, layers: int | None = None) -> dict[str, str]:
    """``{name: name}`` of the routing built-ins for ``space`` (pass as a search's ``metrics``):
    the means over routed layers and, per layer slot, load CV, experts per token (mean and
    histogram), dropped fraction, entropy, null share and per-expert load. ``experts`` /
    ``layers`` default to the space's largest ``moe_experts`` / depth."""
    from archlab.supernets.layers.moe_space import moe_space_limits

    lim = moe_space_limits(space, "routing")
    e = int(experts or lim.experts)
    if layers is None:
        from archlab.supernets.base import extreme_arch

        layers = len(extreme_arch(space).get("layers", []))
    n = max(int(layers), 1)
    stats = ("load_cv", "experts_per_token", "dropped", "entropy", "null_share")
    names = [f"routing.{s}" for s in (*stats, "active_macs", "active_params")]
    for i in range(n):
        names += [f"routing.layers.{i}.{s}" for s in stats]
        names += [f"routing.layers.{i}.load.{j}" for j in range(e)]
        names += [f"routing.layers.{i}.experts_hist.{j}" for j in range(e + 1)]
    return {k: k for k in names}


class _Builtins(dict):
    """The built-in metric factories by name, plus every ``routing.*`` name (made on demand)."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and key.startswith("routing.") and len(key) > 8)

    def __getitem__(self, key: str) -> Callable[[SearchContext], MetricFn]:
        if not super().__contains__(key) and key in self:
            return _routing(key)
        return super().__getitem__(key)


def _predicted_latency(ctx: SearchContext) -> MetricFn:
    from archlab.predictors import LatencyPredictor

    path = ctx.predictor_path()
    if not path.is_file():
        raise SearchError(f"objective 'predicted_latency': no fitted predictor at {path} (run `archlab predictor` first)")
    pred = LatencyPredictor.load(path)

    def fn(arch: Arch) -> float:
        return float(pred.predict([arch])[0])

    fn.batch = lambda archs: np.asarray(pred.predict(list(archs)), dtype=float)  # type: ignore[attr-defined]  # cheap: see samplers.cheap_metrics
    return fn


def _measured_latency(ctx: SearchContext, repeats: int = 20, warmup: int = 5) -> MetricFn:
    import torch

    def fn(arch: Arch) -> float:
        net = ctx.supernet(trained=False)
        sub = net.extract(arch).eval()
        x = net.example_input(1)
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                sub(x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1000.0)
        return float(statistics.median(times))

    return fn


def _cost(ctx: SearchContext, which: str) -> MetricFn | None:
    from archlab.predictors.costs import COST_MODELS, cost_features, find_cost_model

    names = ctx.space.feature_names()
    model = find_cost_model(names)
    if model is None:
        return None
    accepted = set(inspect.signature(COST_MODELS[model].fn).parameters)
    options = {k: v for k, v in ctx.sources.model_kwargs.items() if k in accepted}
    space = ctx.space

    def batch(archs: Any) -> np.ndarray:
        keys, cols = cost_features(model, space.encode_many(list(archs)), names, options)
        return np.asarray(cols[:, keys.index(f"cost.{which}")], dtype=float)

    def fn(arch: Arch) -> float:
        return float(batch([arch])[0])

    fn.batch = batch  # type: ignore[attr-defined]  # analytic, so cheap: see samplers.cheap_metrics
    return fn


def _params(ctx: SearchContext) -> MetricFn:
    if ctx.has_supernet(trained=False):
        def count(arch: Arch) -> float:
            return float(sum(p.numel() for p in ctx.supernet(trained=False).extract(arch).parameters()))

        return count
    fn = _cost(ctx, "params")
    if fn is None:
        raise SearchError("objective 'params' needs MetricSources.untrained (to extract subnets) or a space of a "
                          "family with an analytic cost model")
    return fn


def _macs(ctx: SearchContext) -> MetricFn:
    fn = _cost(ctx, "macs")
    if fn is None:
        raise SearchError("objective 'macs': no analytic cost model fits this space's parameters")
    return fn


def _synflow(ctx: SearchContext) -> MetricFn:
    from archlab.supernets.ranking.zero_cost import SynflowScorer

    if not ctx.has_supernet(trained=False):
        raise SearchError("metric 'synflow' needs MetricSources.untrained (a fresh supernet its subnets are scored on)")
    scorer = SynflowScorer(ctx.supernet(trained=False))

    def fn(arch: Arch) -> float:
        return float(scorer([arch])[0])

    fn.batch = scorer  # type: ignore[attr-defined]  # a forward and backward per arch, cached: see samplers.cheap_metrics
    return fn


OBJECTIVES: dict[str, Callable[[SearchContext], MetricFn]] = _Builtins({
    "inherited": _inherited,
    "predicted_latency": _predicted_latency,
    "measured_latency": _measured_latency,
    "params": _params,
    "macs": _macs,
    "synflow": _synflow,
})


@dataclass(frozen=True)
class Objective:
    """A named objective: direction (``minimize``/``maximize``) and where its value comes from."""

    name: str
    direction: Direction
    source: str | MetricFn

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "direction": self.direction}


def parse_objectives(objectives: Mapping[str, Any]) -> list[Objective]:
    """Check ``{name: (direction, callable or built-in name)}``; raise ``SearchError`` naming the
    bad entry and what is allowed."""
    if not isinstance(objectives, Mapping) or not objectives:
        raise SearchError("objectives must be a non-empty {name: (direction, callable or built-in)} mapping")
    out = []
    for name, spec in objectives.items():
        if not isinstance(name, str) or not name or name.startswith(("metric.", "constraint.", "arch")):
            raise SearchError(f"objective name {name!r} is not allowed (non-empty, not starting with metric./constraint./arch)")
        if isinstance(spec, str) and spec in OBJECTIVES:
            spec = ("min", spec)
        if not (isinstance(spec, (tuple, list)) and len(spec) == 2):
            raise SearchError(f"objective {name!r}: expected (direction, callable or built-in name), got {spec!r}")
        direction, source = spec
        d = DIRECTIONS.get(str(direction).lower())
        if d is None:
            raise SearchError(f"objective {name!r}: direction {direction!r}; allowed: min, max, minimize, maximize")
        if isinstance(source, str):
            if source not in OBJECTIVES:
                raise SearchError(f"objective {name!r}: unknown built-in {source!r}; allowed: {', '.join(OBJECTIVES)} or a callable arch -> float")
        elif not callable(source):
            raise SearchError(f"objective {name!r}: source must be a callable or one of {', '.join(OBJECTIVES)}")
        out.append(Objective(name, d, source))
    return out


def resolve(source: str | MetricFn, ctx: SearchContext) -> MetricFn:
    """The callable behind an objective or metric source."""
    if callable(source):
        return source
    key = f"builtin:{source}"
    if key not in ctx._cache:
        ctx._cache[key] = OBJECTIVES[source](ctx)
    return ctx._cache[key]


def file_sha256(path: str | Path | None) -> str | None:
    """SHA-256 hex digest of a file (``None`` when it does not exist)."""
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
