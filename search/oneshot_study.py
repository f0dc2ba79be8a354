"""A one-shot search of an experiment, landed in the experiment's Optuna study.

``run_oneshot(experiment, method)`` runs ``oneshot_search`` on the experiment's supernet and
task (the trained supernet's weights when there are some, else fresh ones), saves the result
as ``<run_dir>/oneshot/<method>-seed<seed>.json``, then adds the final architecture and the
distinct architectures along the path (each slot's most likely value at each recorded step) to
the experiment's study as trials: they are queued with the user attributes ``method``
(``oneshot:<method>``), ``oneshot_step`` and ``oneshot_final``, and evaluated by the same
objectives as every other trial (``run_search``), so the dashboard and the results API show
them beside the sampler's trials. An architecture already in the study is not evaluated twice
(the trial runner reuses its result).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archlab.spaces.soft import SoftLayout

from .errors import SearchError
from .objectives import SearchContext, resolve
from .oneshot import OneShotConfig, OneShotResult, oneshot_search
from .oneshot_cost import ChoiceCosts
from .runner import run_search
from .settings import search_settings
from .storage import storage_url

METHOD_ATTR = "method"


def _supernet(experiment: Any) -> Any:
    folder = Path(experiment.supernet_dir())
    trained = folder.is_dir() and any(folder.iterdir())
    return experiment.load_supernet() if trained else experiment.build_supernet()


def _costs(experiment: Any, cfg: OneShotConfig) -> ChoiceCosts | None:
    if cfg.latency_weight <= 0:
        return None
    ctx = SearchContext(experiment.space, experiment, Path(experiment.run_dir))
    latency = resolve("predicted_latency", ctx)
    return ChoiceCosts.fit(SoftLayout(experiment.space), lambda archs: [latency(a) for a in archs], seed=cfg.seed)


def _complete(study_name: str, url: Any) -> int:
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def run_oneshot(experiment: Any, method: str, options: Mapping[str, Any] | None = None, *,
                storage: Any = None, seed: int | None = None, experiment_file: str | None = None,
                evaluate: bool = True, show_progress: bool | None = None) -> tuple[Any, OneShotResult]:
    """One-shot search of ``experiment`` by ``method``; returns ``(study, result)``.

    ``options``: ``OneShotConfig`` fields (steps, batch_size, lr, arch_options, latency_weight,
    latency_target_ms, ...). ``evaluate=False`` only saves the result (no study trials)."""
    values = {**dict(options or {}), "method": method}
    if seed is not None:
        values["seed"] = int(seed)
    cfg = OneShotConfig.from_dict(values)
    net = _supernet(experiment)
    out = Path(experiment.run_dir) / "oneshot" / f"{cfg.method}-seed{cfg.seed}.json"
    result = oneshot_search(net, experiment.task, cfg, _costs(experiment, cfg), out=out)
    if not evaluate:
        return None, result
    settings = search_settings(experiment, {"storage": storage, "seed": seed})
    objectives = settings.pop("objectives")
    settings.pop("n_trials", None)
    settings.pop("timeout", None)
    settings["workers"] = 1
    url = settings.get("storage") or f"sqlite:///{Path(experiment.run_dir) / 'study.db'}"
    settings["storage"] = url
    name = settings.get("study_name") or experiment.name
    common = dict(experiment=experiment, experiment_file=experiment_file, show_progress=show_progress, **settings)
    url_s = storage_url(url) if isinstance(url, str) else url
    # open (or create) the study as archlab does, then queue the path's architectures
    study = run_search(experiment.space, objectives, n_trials=_complete(name, url_s), **common)
    path = result.path_archs()
    final_key = result.arch.key
    if final_key not in {a.key for _, a in path}:
        path.append((cfg.steps - 1, result.arch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step, arch in path:
            study.enqueue_trial(experiment.space.to_params(arch), user_attrs={
                METHOD_ATTR: f"oneshot:{cfg.method}", "oneshot_step": int(step),
                "oneshot_final": arch.key == final_key, "oneshot_result": str(out)})
    study = run_search(experiment.space, objectives, n_trials=_complete(name, url_s) + len(path), **common)
    return study, result


def check_method(method: str) -> str:
    """``method`` if it names a one-shot method, else ``SearchError`` listing them."""
    from archlab.supernets.soft.methods import METHODS

    if method not in METHODS:
        raise SearchError(f"--method: unknown {method!r}; allowed: {', '.join(METHODS)}")
    return method


__all__ = ["METHOD_ATTR", "check_method", "run_oneshot"]
