"""A one-shot search of a supernet, landed in the run's Optuna study.

``run_oneshot(space, method, sources=..., settings=..., run_dir=...)`` runs ``oneshot_search``
on the supernet of the metric sources (the trained one when the run folder holds weights, else a
fresh one) and their task, saves the result as ``<run_dir>/oneshot/<method>-seed<seed>.json``,
then adds the final architecture and the distinct architectures along the path (each slot's
most likely value at each recorded step) to the study as trials: they are queued with the user
attributes ``method`` (``oneshot:<method>``), ``oneshot_step`` and ``oneshot_final``, and
evaluated by the same objectives as every other trial (``run_search``), so the dashboard and
the results API show them beside the sampler's trials. An architecture already in the study is
not evaluated twice (the trial runner reuses its result). ``archlab.experiment`` makes the
sources and settings of an experiment (``archlab.searching.run_oneshot``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archlab.core.layout import RunLayout, default_storage_url
from archlab.spaces import SearchSpace
from archlab.spaces.soft import SoftLayout

from .errors import SearchError
from .metric_sources import MetricSources, SearchContext
from .objectives import resolve
from .oneshot import OneShotConfig, OneShotResult, oneshot_search
from .oneshot_cost import ChoiceCosts
from .runner import run_search
from .storage import storage_url

METHOD_ATTR = "method"


def _supernet(ctx: SearchContext) -> Any:
    """The trained supernet when the run folder holds one, else a fresh one (both in eval mode;
    ``oneshot_search`` sets the modes it trains in)."""
    trained = ctx.layout is not None and ctx.layout.has_trained_supernet()
    return ctx.supernet(trained=trained)


def _costs(ctx: SearchContext, cfg: OneShotConfig) -> ChoiceCosts | None:
    if cfg.latency_weight <= 0:
        return None
    latency = resolve("predicted_latency", ctx)
    return ChoiceCosts.fit(SoftLayout(ctx.space), lambda archs: [latency(a) for a in archs], seed=cfg.seed)


def _complete(study_name: str, url: Any) -> int:
    import optuna

    from .storage import open_storage

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def run_oneshot(space: SearchSpace, method: str, options: Mapping[str, Any] | None = None, *,
                sources: MetricSources, settings: Mapping[str, Any], run_dir: str | Path,
                seed: int | None = None, evaluate: bool = True,
                show_progress: bool | None = None) -> tuple[Any, OneShotResult]:
    """One-shot search of ``space`` by ``method``; returns ``(study, result)``.

    ``options``: ``OneShotConfig`` fields (steps, batch_size, lr, arch_options, latency_weight,
    latency_target_ms, ...); ``sources``: the supernet(s) and task (``MetricSources``);
    ``settings``: ``run_search`` keyword arguments (``search_settings``: objectives, storage,
    study name, sampler, ...); ``run_dir``: the run folder (predictors, the result file, the
    default storage). ``evaluate=False`` only saves the result (no study trials)."""
    values = {**dict(options or {}), "method": method}
    if seed is not None:
        values["seed"] = int(seed)
    cfg = OneShotConfig.from_dict(values)
    layout = RunLayout(Path(run_dir))
    ctx = SearchContext(space, sources, layout)
    net = _supernet(ctx)
    out = layout.oneshot_result(cfg.method, cfg.seed)
    result = oneshot_search(net, ctx.require_task("oneshot"), cfg, _costs(ctx, cfg), out=out)
    if not evaluate:
        return None, result
    kwargs = dict(settings)
    objectives = kwargs.pop("objectives")
    kwargs.pop("n_trials", None)
    kwargs.pop("timeout", None)
    kwargs["workers"] = 1
    name = kwargs.get("study_name") or sources.name or space.name
    url = kwargs.get("storage") or default_storage_url(run_dir, name)
    kwargs.update(storage=url, study_name=name)
    common = dict(sources=sources, run_dir=run_dir, show_progress=show_progress, **kwargs)
    url_s = storage_url(url) if isinstance(url, str) else url
    # open (or create) the study as archlab does, then queue the path's architectures
    study = run_search(space, objectives, n_trials=_complete(name, url_s), **common)
    path = result.path_archs()
    final_key = result.arch.key
    if final_key not in {a.key for _, a in path}:
        path.append((cfg.steps - 1, result.arch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step, arch in path:
            study.enqueue_trial(space.to_params(arch), user_attrs={
                METHOD_ATTR: f"oneshot:{cfg.method}", "oneshot_step": int(step),
                "oneshot_final": arch.key == final_key, "oneshot_result": str(out)})
    study = run_search(space, objectives, n_trials=_complete(name, url_s) + len(path), **common)
    return study, result


def check_method(method: str) -> str:
    """``method`` if it names a one-shot method, else ``SearchError`` listing them."""
    from archlab.supernets.soft.methods import METHODS

    if method not in METHODS:
        raise SearchError(f"--method: unknown {method!r}; allowed: {', '.join(METHODS)}")
    return method


__all__ = ["METHOD_ATTR", "check_method", "run_oneshot"]
