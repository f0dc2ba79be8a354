"""``run_search``: a multi-objective Optuna study over a search space, resumable, with workers.

How a run reaches exactly ``n_trials`` completed trials, whatever the number of workers or
machines: the study is created once under a cross-process lock (``storage.study_lock``), and a
worker creates a new trial only under that lock and only while completed + running + queued
trials are fewer than ``n_trials``, so the total is exact; a worker killed by ``kill -9`` leaves a ``RUNNING`` trial whose heartbeat stops, another
worker marks it failed and ``RetryHeartbeatStaleTrialCallback`` queues it again with the same
parameters. Ctrl-C fails the running trial cleanly (Optuna) and stops; re-running the same
call continues the study up to its total.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from archlab.spaces import SearchSpace

from .errors import SearchError
from .objectives import OBJECTIVES, Objective, SearchContext, file_sha256, parse_objectives
from .progress import SearchProgress
from .samplers import check_sampler, make_sampler
from .storage import (
    JOURNAL_SCHEME,
    count_trials,
    open_storage,
    storage_url,
    study_lock,
    supports_heartbeat,
)
from .trial_runner import TrialRunner, attrs_with_final_state

ATTR_KEY = "archlab"
COUNTS = ("trials", "distinct")  # what n_trials counts (run_search's ``count``)


class _QueueEmpty(Exception):
    """Raised instead of creating a trial beyond the study's total."""


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


def _files(run_dir: Path | None) -> dict[str, str | None]:
    if run_dir is None:
        return {"supernet": None, "predictor": None}
    sup = Path(run_dir) / "supernet"
    weights = sorted(sup.glob("*.safetensors")) if sup.is_dir() else []
    ckpt = weights[0] if weights else sup / "ckpt.pt"
    return {"supernet": file_sha256(ckpt), "predictor": file_sha256(Path(run_dir) / "predictors" / "latency.json")}


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
    experiment: Any = None,
    experiment_file: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    sampler_options: Mapping[str, Any] | None = None,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    show_progress: bool | None = None,
    count: str = "trials",
) -> Any:
    """Search ``space`` for the Pareto front of ``objectives``; returns the Optuna study.

    ``objectives``: ``{name: (direction, callable arch -> float | built-in name)}`` (built-ins:
    ``archlab.search.objectives.OBJECTIVES``). ``n_trials``: the study's total of completed
    trials (a re-run continues up to it; ``None`` runs until ``timeout`` seconds or Ctrl-C).
    ``sampler``: a name in ``SAMPLERS`` (``sampler_options`` go to it). ``storage``: Optuna URL,
    path or storage object; default ``sqlite:///runs/<study_name>/study.db`` (the experiment's
    run directory when ``experiment`` is given). ``constraints``: ``{metric: upper bound}`` on
    objectives, ``metrics`` (extra ``{name: callable or built-in}``) or built-ins; infeasible
    trials are kept and marked through ``trial.set_constraint(name, value - bound)``.
    ``workers`` processes share the study (RDB storages: heartbeats every
    ``heartbeat_interval`` s, a dead worker's trial is failed after ``grace_period`` s and
    re-run). Worker ``i`` seeds its sampler with ``seed + i``. ``count``: what ``n_trials``
    counts, ``"trials"`` (every completed trial) or ``"distinct"`` (distinct evaluations: a
    trial answered from an earlier evaluation of the same architecture, user attribute
    ``reused_from``, does not count; see ``_extend_by_repeats``).
    """
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
    extra = dict(metrics or {})
    for k, v in extra.items():
        if not callable(v) and v not in OBJECTIVES:
            raise SearchError(f"metric {k!r}: unknown built-in {v!r}; allowed: {', '.join(OBJECTIVES)} or a callable")
    names = [o.name for o in objs]
    known = list(dict.fromkeys(names + list(extra) + list(OBJECTIVES)))
    bounds = _parse_constraints(constraints, known)
    for k in bounds:
        if k not in names and k not in extra:
            extra[k] = k  # a constrained built-in becomes an extra metric
    study_name = study_name or (getattr(experiment, "name", None) or space.name)
    run_dir = Path(experiment.run_dir) if experiment is not None else None
    if storage is None:
        storage = f"sqlite:///{(run_dir or Path('runs') / study_name) / 'study.db'}"
    ctx = SearchContext(space, experiment, run_dir)
    attrs = {
        "version": _version(),
        "space": space.to_json(),
        "objectives": [o.to_json() for o in objs],
        "constraints": bounds,
        "experiment": getattr(experiment, "name", None),
        "experiment_file": experiment_file,
        "run_dir": str(run_dir.resolve()) if run_dir is not None else None,
        "files": _files(run_dir),
        "sampler": sampler,
    }
    url = storage if isinstance(storage, optuna.storages.BaseStorage) else storage_url(storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        lock = study_lock(url, study_name)
        with lock:
            st = _open(url, heartbeat_interval, grace_period, must_exist=False)
            study = optuna.create_study(storage=st, study_name=study_name, directions=[o.direction for o in objs],
                                        sampler=optuna.samplers.RandomSampler(), load_if_exists=True)
            if [d.name.lower() for d in study.directions] != [o.direction for o in objs]:
                raise SearchError(f"study {study_name!r} has directions {[d.name.lower() for d in study.directions]}, not {[o.direction for o in objs]}")
            info = study.user_attrs.get(ATTR_KEY) or {}
            _check_existing(study, info, attrs, study_name)
            if not info:
                study.set_user_attr(ATTR_KEY, attrs)
            attrs_with_final_state(study, space)  # a dead worker's trial failed here keeps its arch
            _fail_stale(study)
        lock.close()
    run = _Run(url, study_name, space, objs, extra, bounds, ctx, sampler, dict(sampler_options or {}), seed,
               n_trials, timeout, heartbeat_interval, grace_period, list(callbacks), show_progress, count)
    if workers == 1 or isinstance(url, optuna.storages.InMemoryStorage):
        run.work(0, st)  # one process: keep the storage (and its connection) opened above
        return optuna.load_study(study_name=study_name, storage=st)
    if isinstance(st, optuna.storages.RDBStorage):
        st.engine.dispose()  # no pooled connection is shared with the forked workers
    _fork_workers(run, workers)
    return optuna.load_study(study_name=study_name, storage=_open(url, None, None, must_exist=True))


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


def _fail_stale(study: Any) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)  # no-op without heartbeats


def _guard_total(study: Any, n_trials: int | Callable[[], int], lock: Any) -> None:
    """Make ``study.ask`` create a new trial only while completed + running + queued trials are
    fewer than ``n_trials``, counted in the storage under the study lock (exact across workers
    and machines sharing the lock); otherwise it raises ``_QueueEmpty``. Queued (``WAITING``)
    trials, such as a dead worker's re-queued trial, are still popped first."""
    import optuna

    S = optuna.trial.TrialState
    storage = study._storage
    original = storage.create_new_trial
    live = (S.COMPLETE, S.RUNNING, S.WAITING)

    def guarded(study_id: int, template_trial: Any = None) -> int:
        if template_trial is not None:
            return original(study_id, template_trial)
        with lock:
            if count_trials(storage, study_id, live) >= (n_trials() if callable(n_trials) else n_trials):
                raise _QueueEmpty
            return original(study_id, None)

    storage.create_new_trial = guarded


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


class _Run:
    """Everything a worker needs; ``work(i)`` runs worker ``i`` in the current process."""

    def __init__(self, url: Any, study_name: str, space: SearchSpace, objs: list[Objective],
                 extra: dict[str, Any], bounds: dict[str, float], ctx: SearchContext, sampler: str,
                 sampler_options: dict[str, Any], seed: int | None, n_trials: int | None,
                 timeout: float | None, heartbeat: int, grace: int | None,
                 callbacks: list[Any], show_progress: bool | None, count: str = "trials") -> None:
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def work(self, index: int, storage: Any = None) -> None:
        """Run worker ``index`` here, on ``storage`` (opened from the URL when ``None``)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        st = storage if storage is not None else _open(self.url, self.heartbeat, self.grace, must_exist=True)
        seed = None if self.seed is None else int(self.seed) + index
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = make_sampler(self.sampler, self.space, seed=seed, n_objectives=len(self.objs),
                                   options=dict(self.sampler_options))
            study = optuna.load_study(study_name=self.study_name, storage=st, sampler=sampler)
            lock = study_lock(self.url, self.study_name)
            repeats = [0]  # count="distinct": trials answered from the study, added to the total
            if self.n_trials is not None:
                _guard_total(study, (lambda: self.n_trials + repeats[0]) if self.count == "distinct" else self.n_trials,
                             lock)
            if isinstance(self.url, str) and self.url.startswith("sqlite"):
                # SQLite has no SELECT ... FOR UPDATE: two workers could pop the same queued
                # trial, so popping is serialised with the study's file lock.
                pop = study._pop_waiting_trial_id

                def locked_pop() -> int | None:
                    with lock:
                        return pop()

                study._pop_waiting_trial_id = locked_pop
            runner = TrialRunner(self.space, self.objs, self.extra, self.bounds, self.ctx)
            runner.attach(study)
            bar = SearchProgress(study, self.n_trials, enabled=self.show_progress if index == 0 else False)
            objective = runner if not bar.enabled else _stepping(runner, bar)
            deadline = None if self.timeout is None else time.monotonic() + float(self.timeout)
            try:
                while True:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    try:
                        study.optimize(objective, timeout=left, callbacks=self.callbacks or None)
                        break
                    except _QueueEmpty:
                        if self.count == "distinct" and _extend_by_repeats(study, repeats):
                            continue
                        if not self._wait_for_more(study, deadline):
                            break
            finally:
                bar.close()
                lock.close()

    def _wait_for_more(self, study: Any, deadline: float | None) -> bool:
        """After the queue ran dry: wait while other workers' trials run; True when a trial is
        queued again (a dead worker's trial re-queued by the heartbeat check)."""
        import optuna

        S = optuna.trial.TrialState
        heartbeat = supports_heartbeat(getattr(study._storage, "_backend", study._storage))
        while deadline is None or time.monotonic() < deadline:
            trials = study.get_trials(deepcopy=False, states=(S.WAITING, S.RUNNING))
            if any(t.state == S.WAITING for t in trials):
                return True
            if not trials or not heartbeat:
                return False
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
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


def _fork_workers(run: _Run, workers: int) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = []
    for i in range(workers):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(run, i, child), daemon=False)
        p.start()
        child.close()
        procs.append((p, parent))
    try:
        for p, _ in procs:
            p.join()
    except KeyboardInterrupt:
        for p, _ in procs:
            if p.is_alive() and p.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)
        for p, _ in procs:
            p.join(timeout=30)
        raise
    errors = []
    for i, (p, conn) in enumerate(procs):
        try:
            msg = conn.recv() if conn.poll() else None
        except (EOFError, OSError):
            msg = None
        if p.exitcode == 130:
            raise KeyboardInterrupt
        if p.exitcode != 0:
            errors.append(f"worker {i}: {msg or f'exit code {p.exitcode}'}")
    if errors:
        raise SearchError("; ".join(errors))


def _child(run: _Run, index: int, conn: Any) -> None:
    code = 0
    try:
        run.work(index)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        conn.close()
    os._exit(code)
