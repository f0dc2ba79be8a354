"""``run_search``: a multi-objective Optuna study over a search space, resumable, with workers.

How a run reaches exactly ``n_trials`` completed trials, whatever the number of workers or
machines: the study is created once under a cross-process lock (``storage.study_lock``), and a
worker creates a new trial only under that lock and only while completed + running + queued
trials are fewer than ``n_trials`` (``trial_guard``), so the total is exact. A worker killed by
``kill -9`` leaves a ``RUNNING`` trial whose heartbeat stops (or never began): another worker,
the parent or the next run fails it and queues it again with the same parameters
(``stale``). Failed trials count against ``max_failures``, so a search whose objective returns
NaN ends with a clear error. Ctrl-C fails the running trial cleanly and stops; re-running the
same call continues the study up to its total. Worker processes: ``archlab.search.workers``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archlab.core.layout import RunLayout, default_storage_url
from archlab.spaces import SearchSpace

from . import optuna_compat as compat
from .errors import SearchError
from .metric_sources import MetricSources, SearchContext
from .objectives import OBJECTIVES, Objective, file_sha256, parse_objectives, resolve
from .plan_sampler import PlanSampler
from .progress import SearchProgress
from .samplers import cheap_metrics, check_sampler, make_sampler
from .stale import fail_stale
from .storage import JOURNAL_SCHEME, open_storage, storage_url, study_lock, supports_heartbeat
from .trial_guard import QuietFailures, TrialGuard, _QueueEmpty, default_max_failures
from .trial_runner import TrialRunner, attrs_with_final_state

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

ATTR_KEY = "archlab"
COUNTS = ("trials", "distinct")  # what n_trials counts (run_search's ``count``)

def _parse_constraints(constraints: Mapping[str, Any] | None, known: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, bound in (constraints or {}).items():
        if name not in known:
            raise SearchError(f"constraint on unknown metric {name!r}; known metrics: {', '.join(known)}")
        try:
            b = float(bound)
        except (TypeError, ValueError):
            raise SearchError(f"constraint {name!r}: bound must be a number (an upper bound), got {bound!r}") from None
        if math.isnan(b):
            raise SearchError(f"constraint {name!r}: bound is NaN")
        out[str(name)] = b
    return out


def _files(layout: RunLayout | None) -> dict[str, str | None]:
    if layout is None:
        return {"supernet": None, "predictor": None}
    return {"supernet": file_sha256(layout.trained_weights()), "predictor": file_sha256(layout.predictor("latency"))}



def _hint_names(options: Mapping[str, Any], sampler: str, allowed: Sequence[str]) -> None:
    """Check ``sampler_options["hints"]`` before any worker starts: the ``ehvi`` sampler's list of
    metric names (this search's objectives and metrics, or built-ins) and callables."""
    if "hints" not in options:
        return
    hints = options["hints"]
    if sampler != "ehvi":
        raise SearchError(f"sampler_options.hints: only the 'ehvi' sampler takes hints, not {sampler!r}")
    if isinstance(hints, (str, bytes)) or not isinstance(hints, Sequence):
        raise SearchError(f"sampler_options.hints: expected a list of metric names or callables archs -> values, got {hints!r}")
    for h in hints:
        if not callable(h) and (not isinstance(h, str) or h not in allowed):
            raise SearchError(f"sampler_options.hints: unknown metric {h!r}; allowed: {', '.join(allowed)} "
                              "or a callable archs -> values")


def _hints(hints: Sequence[Any], fns: Mapping[str, Any], ctx: SearchContext) -> list[Callable[[Any], Any]]:
    """The ``ehvi`` sampler's hints as callables ``archs -> values``: a name becomes the batch
    form of that metric of the search (or built-in), made in this worker."""
    out: list[Callable[[Any], Any]] = []
    for h in hints:
        if callable(h):
            out.append(h)
            continue
        fn = fns[h] if h in fns else resolve(h, ctx)
        batch = getattr(fn, "batch", None)
        out.append(batch if callable(batch) else _each(fn))
    return out


def _each(fn: Callable[[Any], float]) -> Callable[[Any], list[float]]:
    """The batch form of a metric without one: called per architecture."""
    return lambda archs: [fn(a) for a in archs]


def _check_existing(study: Any, info: Mapping[str, Any], attrs: Mapping[str, Any], name: str) -> None:
    if not info:
        if study.get_trials(deepcopy=False):
            raise SearchError(f"study {name!r} exists and has trials but was not created by archlab; choose another study name")
        return
    old = info.get("space")
    if old:
        try:
            fp = SearchSpace.from_json(old).fingerprint
        except Exception:  # an unreadable space is a different space
            fp = None
        new = SearchSpace.from_json(attrs["space"]).fingerprint
        if fp != new:
            old_name = _space_name(old)
            raise SearchError(
                f"study {name!r} was created for space {old_name!r} (fingerprint {fp}), not for this "
                f"space {SearchSpace.from_json(attrs['space']).name!r} (fingerprint {new}); use another study name"
            )
    if [dict(o) for o in info.get("objectives", [])] != attrs["objectives"]:
        raise SearchError(f"study {name!r} has objectives {info.get('objectives')}, not {attrs['objectives']}; use another study name")
    if dict(info.get("constraints") or {}) != attrs["constraints"]:
        raise SearchError(f"study {name!r} has constraints {info.get('constraints')}, not {attrs['constraints']}; use another study name")


def _space_name(text: str) -> str:
    import json

    try:
        return str(json.loads(text).get("name"))
    except (ValueError, AttributeError):
        return "?"


def run_search(
    space: SearchSpace,
    objectives: Mapping[str, Any],
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    sampler: str = "nsga2",
    storage: Any = None,
    study_name: str | None = None,
    constraints: Mapping[str, float] | None = None,
    seed: int | None = None,
    workers: int = 1,
    sources: MetricSources | None = None,
    run_dir: str | Path | None = None,
    metrics: Mapping[str, Any] | None = None,
    sampler_options: Mapping[str, Any] | None = None,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
    max_failures: int | None = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    show_progress: bool | None = None,
    worker_recipe: Callable[[], Mapping[str, Any]] | None = None,
    count: str = "trials",
) -> Any:
    """Search ``space`` for the Pareto front of ``objectives``; returns the Optuna study.

    ``objectives``: ``{name: (direction, callable arch -> float | built-in name)}`` (built-ins:
    ``archlab.search.objectives.OBJECTIVES``). ``n_trials``: the study's total of completed
    trials (a re-run continues up to it; ``None`` runs until ``timeout`` seconds or Ctrl-C).
    ``sampler``: a name in ``SAMPLERS`` (``sampler_options`` go to it). ``storage``: Optuna URL,
    path or storage object; default ``RunLayout(run_dir).storage_url`` (``run_dir/study.db``,
    ``runs/<study_name>/study.db`` without ``run_dir``). ``sources``: ``MetricSources`` the
    built-in metrics are computed from (a trained supernet, a task, ...; an experiment makes
    them with ``Experiment.metric_sources()``); ``run_dir``: the run folder (its
    ``predictors/latency.json`` serves ``predicted_latency``; its files' hashes are recorded).
    ``study_name`` defaults to ``sources.name``, else the space's name. ``constraints``: ``{metric: upper bound}`` on
    objectives, ``metrics`` (extra ``{name: callable or built-in}``) or built-ins; infeasible
    trials are kept and marked through ``trial.set_constraint(name, value - bound)``.
    ``max_failures``: the run stops with ``TooManyFailures`` (a ``SearchError``) once this many
    trials failed in it (an exception, or a NaN / infinite objective: ``fail_reason`` says
    which); default ``max(10, n_trials)``, or ``max(10, trials completed in this run)`` without
    ``n_trials``.
    ``workers`` processes share the study (RDB storages: heartbeats every
    ``heartbeat_interval`` s, a dead worker's trial is failed after ``grace_period`` s and
    re-run). Worker ``i`` seeds its sampler with ``seed + i``. ``worker_recipe``: a picklable
    callable returning these keyword arguments in a fresh process; with it, workers are started
    with ``spawn`` and build everything themselves (safe whatever this process ran before);
    without it they are forked (closures work) and use one torch thread each. The parent
    enforces ``timeout`` and Ctrl-C on its workers, stuck or not (``archlab.search.workers``).
    ``count``: what ``n_trials``
    counts, ``"trials"`` (every completed trial) or ``"distinct"`` (distinct evaluations: a
    trial answered from an earlier evaluation of the same architecture, user attribute
    ``reused_from``, does not count; see ``_extend_by_repeats``).
    """
    run, st = _prepare(space, objectives, n_trials=n_trials, timeout=timeout, sampler=sampler, storage=storage,
                       study_name=study_name, constraints=constraints, seed=seed, workers=workers,
                       sources=sources, run_dir=run_dir, metrics=metrics,
                       sampler_options=sampler_options, heartbeat_interval=heartbeat_interval,
                       grace_period=grace_period, max_failures=max_failures, callbacks=callbacks,
                       show_progress=show_progress, count=count)
    import optuna

    if workers == 1 or isinstance(run.url, optuna.storages.InMemoryStorage):
        from .watchdog import run_alone

        run_alone(run, st)  # one process: keep the storage (and its connection) opened above
        return compat.load_study(study_name=run.study_name, storage=st)
    if isinstance(st, optuna.storages.RDBStorage):
        st.engine.dispose()  # no pooled connection is shared with the forked workers
    from .workers import run_workers

    run_workers(run, workers, worker_recipe)
    return run.open_study()


def _prepare(space: SearchSpace, objectives: Mapping[str, Any], *, n_trials: int | None = None,
             timeout: float | None = None, sampler: str = "nsga2", storage: Any = None,
             study_name: str | None = None, constraints: Mapping[str, float] | None = None,
             seed: int | None = None, workers: int = 1, sources: MetricSources | None = None,
             run_dir: str | Path | None = None, metrics: Mapping[str, Any] | None = None,
             sampler_options: Mapping[str, Any] | None = None, heartbeat_interval: int = 10,
             grace_period: int | None = None, max_failures: int | None = None,
             callbacks: Sequence[Callable[[Any, Any], None]] = (), show_progress: bool | None = None,
             count: str = "trials", **_: Any) -> tuple[_Run, Any]:
    """Check the arguments, create or check the study (under the study lock), fail its stale
    trials; returns the ``_Run`` every worker runs and the storage opened here."""
    import optuna

    if not isinstance(space, SearchSpace):
        raise SearchError(f"space must be a SearchSpace, got {type(space).__name__}")
    objs = parse_objectives(objectives)
    check_sampler(sampler)
    if not isinstance(workers, int) or workers < 1:
        raise SearchError(f"workers must be an integer >= 1, got {workers!r}")
    if n_trials is not None and (not isinstance(n_trials, int) or n_trials < 0):
        raise SearchError(f"n_trials must be an integer >= 0 or None, got {n_trials!r}")
    if count not in COUNTS:
        raise SearchError(f"count must be one of {', '.join(COUNTS)}, got {count!r}")
    if timeout is not None and not timeout > 0:
        raise SearchError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if max_failures is not None and (isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1):
        raise SearchError(f"max_failures must be an integer >= 1 or None, got {max_failures!r}")
    extra = dict(metrics or {})
    for k, v in extra.items():
        if not callable(v) and v not in OBJECTIVES:
            raise SearchError(f"metric {k!r}: unknown built-in {v!r}; allowed: {', '.join(OBJECTIVES)} or a callable")
    names = [o.name for o in objs]
    known = list(dict.fromkeys(names + list(extra) + list(OBJECTIVES)))
    bounds = _parse_constraints(constraints, known)
    _hint_names(dict(sampler_options or {}), sampler, known)
    for k in bounds:
        if k not in names and k not in extra:
            extra[k] = k  # a constrained built-in becomes an extra metric
    sources = MetricSources() if sources is None else sources
    if not isinstance(sources, MetricSources):
        raise SearchError(f"sources: expected archlab.search.MetricSources, got {type(sources).__name__}")
    study_name = study_name or sources.name or space.name
    layout = RunLayout(Path(run_dir)) if run_dir is not None else None
    if storage is None:
        storage = default_storage_url(run_dir, study_name)
    ctx = SearchContext(space, sources, layout)
    attrs = {
        "version": _version(),
        "space": space.to_json(),
        "objectives": [o.to_json() for o in objs],
        "constraints": bounds,
        **sources.recorded(),  # informational only: export never imports what it names
        "space_fingerprint": space.fingerprint,
        "run_dir": str(layout.root.resolve()) if layout is not None else None,
        "files": _files(layout),
        "sampler": sampler,
    }
    url = storage if isinstance(storage, optuna.storages.BaseStorage) else storage_url(storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        lock = study_lock(url, study_name)
        with lock:
            st = _open(url, heartbeat_interval, grace_period, must_exist=False)
            study = compat.create_study(storage=st, study_name=study_name, directions=[o.direction for o in objs],
                                        sampler=optuna.samplers.RandomSampler(), load_if_exists=True)
            if [d.name.lower() for d in study.directions] != [o.direction for o in objs]:
                raise SearchError(f"study {study_name!r} has directions {[d.name.lower() for d in study.directions]}, not {[o.direction for o in objs]}")
            info = study.user_attrs.get(ATTR_KEY) or {}
            _check_existing(study, info, attrs, study_name)
            if not info:
                study.set_user_attr(ATTR_KEY, attrs)
            attrs_with_final_state(study, space)  # a dead worker's trial failed here keeps its arch
            fail_stale(study, space)
        lock.close()
    deadline = None if timeout is None else time.time() + float(timeout)
    limit = max_failures if max_failures is not None else default_max_failures(n_trials)
    run = _Run(url, study_name, space, objs, extra, bounds, ctx, sampler, dict(sampler_options or {}), seed,
               n_trials, deadline, limit, heartbeat_interval, grace_period, list(callbacks), show_progress,
               count)
    return run, st


def _version() -> str:
    import archlab

    return archlab.__version__


def _open(url: Any, heartbeat: int | None, grace: int | None, *, must_exist: bool) -> Any:
    # every URL but a journal file is an RDB storage (see open_storage): heartbeats are possible
    rdb = isinstance(url, str) and not url.startswith(JOURNAL_SCHEME)
    beat: dict[str, Any] = {}
    if heartbeat and rdb:
        beat = {"heartbeat_interval": heartbeat, "grace_period": grace or 3 * heartbeat, "retry_stale": True}
    last: Exception | None = None
    for attempt in range(5):  # concurrent first opens of a new RDB can race on table creation
        try:
            return open_storage(url, must_exist=must_exist, **beat)
        except Exception as exc:
            last = exc
            if "cannot open storage" in str(exc) and "no such" not in str(exc) and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise
    raise last  # type: ignore[misc]  # pragma: no cover


def _extend_by_repeats(study: Any, repeats: list[int]) -> bool:
    """``count="distinct"``: set ``repeats[0]`` to the number of completed trials answered from an
    earlier evaluation (``reused_from``), read from the storage; True when it grew (the total
    has room for more distinct evaluations)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    n = sum("reused_from" in t.user_attrs for t in done)
    grew = n > repeats[0]
    repeats[0] = max(repeats[0], n)
    return grew


@dataclass
class _Run:
    """Everything a worker needs; ``work(i)`` runs worker ``i`` in the current process.
    ``deadline``: wall-clock time (``time.time()``) after which no trial starts."""

    url: str | BaseStorage
    study_name: str
    space: SearchSpace
    objs: list[Objective]
    extra: dict[str, Any]
    bounds: dict[str, float]
    ctx: SearchContext
    sampler: str
    sampler_options: dict[str, Any]
    seed: int | None
    n_trials: int | None
    deadline: float | None
    max_failures: int | None
    heartbeat: int
    grace: int | None
    callbacks: list[Any]
    show_progress: bool | None
    count: str = "trials"

    def open_study(self) -> optuna.Study:
        """The study on a storage connection of its own (no heartbeat): for the parent or a
        watchdog that fails a worker's trial while the worker's own connection is busy."""
        return compat.load_study(study_name=self.study_name, storage=_open(self.url, None, None, must_exist=True))

    def work(self, index: int, storage: Any = None, slot: Any = None) -> None:
        """Run worker ``index`` here, on ``storage`` (opened from the URL when ``None``);
        ``slot`` (a shared integer) tells a parent process the id of the trial in hand."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        st = storage if storage is not None else _open(self.url, self.heartbeat, self.grace, must_exist=True)
        seed = None if self.seed is None else int(self.seed) + index
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            runner = TrialRunner(self.space, self.objs, self.extra, self.bounds, self.ctx)
            options = dict(self.sampler_options)
            cheap = cheap_metrics(runner.fns, [o.name for o in self.objs] + list(self.bounds))
            if self.sampler == "ehvi" and "known" not in options and cheap:
                options["known"] = cheap  # computed for every candidate, not modelled
            if "hints" in options:
                options["hints"] = _hints(options["hints"], runner.fns, self.ctx)
            sampler = make_sampler(self.sampler, self.space, seed=seed, n_objectives=len(self.objs), options=options)
            study = compat.load_study(study_name=self.study_name, storage=st, sampler=sampler)
            lock = study_lock(self.url, self.study_name)
            if isinstance(sampler, PlanSampler):
                sampler.serial = lock  # workers plan one at a time and see each other's plans
            repeats = [0]  # count="distinct": trials answered from the study, added to the total
            total: Any = self.n_trials
            if self.n_trials is not None and self.count == "distinct":
                total = lambda: self.n_trials + repeats[0]  # noqa: E731
            beats = bool(self.heartbeat) and supports_heartbeat(compat.rdb_backend(compat.storage_of(study)))
            guard = TrialGuard(total, self.max_failures, lock, self.heartbeat, slot,
                               sweep=(lambda: fail_stale(study, self.space)) if beats else None)
            guard.install(study)
            runner.evaluating = guard.evaluating  # Ctrl-C interrupts the user's functions only
            if isinstance(self.url, str) and self.url.startswith("sqlite"):
                # SQLite has no SELECT ... FOR UPDATE: two workers could pop the same queued
                # trial, so popping is serialised with the study's file lock.
                compat.lock_pop(study, lock)
            runner.attach(study)
            bar = SearchProgress(study, self.n_trials, enabled=self.show_progress if index == 0 else False)
            objective = guard.wrap(runner if not bar.enabled else _stepping(runner, bar))
            try:
                with guard.interruptible(), QuietFailures.installed():
                    while True:
                        if guard.stop:
                            raise KeyboardInterrupt
                        left = None if self.deadline is None else self.deadline - time.time()
                        if left is not None and left <= 0:
                            break
                        try:
                            study.optimize(objective, timeout=left, callbacks=self.callbacks or None)
                            break
                        except _QueueEmpty:
                            if self.count == "distinct" and _extend_by_repeats(study, repeats):
                                continue
                            if not self._wait_for_more(study, guard):
                                break
            finally:
                bar.close()
                guard.close()
                lock.close()

    def _wait_for_more(self, study: Any, guard: TrialGuard) -> bool:
        """After the queue ran dry: wait while other workers' trials run, failing stale ones;
        True when a trial is queued again (a dead worker's trial re-queued)."""
        import optuna

        S = optuna.trial.TrialState
        heartbeat = supports_heartbeat(compat.rdb_backend(compat.storage_of(study)))
        while self.deadline is None or time.time() < self.deadline:
            if guard.stop:
                raise KeyboardInterrupt
            trials = study.get_trials(deepcopy=False, states=(S.WAITING, S.RUNNING))
            if any(t.state == S.WAITING for t in trials):
                return True
            if not trials or not heartbeat:
                return False
            guard.sweep_stale()
            time.sleep(min(1.0, float(self.heartbeat)))
        return False


def _stepping(runner: TrialRunner, bar: SearchProgress) -> Callable[[Any], list[float]]:
    """``runner`` stepping ``bar`` after each trial (without an Optuna callback, which would make
    Optuna fetch the finished trial from the storage again)."""

    def objective(trial: Any) -> list[float]:
        try:
            return runner(trial)
        finally:
            bar.step()

    return objective
