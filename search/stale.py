"""Stale trials: trials left ``RUNNING`` by a worker that is gone, failed and queued again.

A trial is stale when it is ``RUNNING`` and either

- its heartbeat row is older than the grace period (Optuna's own rule), or
- it has no heartbeat row at all and started longer ago than the grace period: its worker was
  killed before the heartbeat began (Optuna creates the trial, then the sampler chooses, and only
  then starts the heartbeat). archlab's workers beat from the trial's creation on
  (``archlab.search.trial_guard``), so a live archlab worker's trial always has a fresh row.

``fail_stale(study)`` fails both kinds (with a ``fail_reason`` user attribute and the ``arch``
taken from the trial's parameters) and queues each again with the same parameters
(``retry``), so a re-run reaches its trial count instead of waiting forever. ``fail_trials``
does the same for trials whose worker the caller knows to be dead (the parent after killing a
stuck worker). Heartbeats exist on RDB storages only; elsewhere the no-heartbeat rule is off.
Both rules read Optuna's heartbeat table through ``archlab.search.optuna_compat``; on its
public-API fallback they read the beat times archlab's workers record on each trial instead.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from archlab.spaces import SearchSpace

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial
from . import optuna_compat as compat

REASON_KEY = "fail_reason"


def _backend(study: Any) -> Any:
    """The RDB storage behind ``study`` (``None`` for other storages)."""
    return compat.rdb_backend(compat.storage_of(study))


def _grace(backend: Any) -> float | None:
    interval = getattr(backend, "heartbeat_interval", None)
    if not interval:
        return None
    return float(getattr(backend, "grace_period", None) or 2 * interval)


def unbeaten_trial_ids(study: Study, now: datetime | None = None) -> list[int]:
    """Ids of ``study``'s ``RUNNING`` trials with no heartbeat row that started more than the
    grace period ago (clock of this machine, as Optuna's ``datetime_start``); ``[]`` when the
    storage has no heartbeat."""
    import optuna

    backend = _backend(study)
    grace = _grace(backend)
    models = compat.rdb_models()
    if backend is None or grace is None or models is None:
        return []
    import sqlalchemy as sa

    t = models.TrialModel.__table__
    h = models.TrialHeartbeatModel.__table__
    cutoff = (now or datetime.now()) - timedelta(seconds=grace)
    query = (
        sa.select(t.c.trial_id)
        .where(t.c.study_id == compat.study_id(study), t.c.state == optuna.trial.TrialState.RUNNING,
               t.c.datetime_start < cutoff, ~sa.exists().where(h.c.trial_id == t.c.trial_id))
        .order_by(t.c.trial_id)
    )
    with backend.engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(query)]


def retry(study: Study, trial: FrozenTrial) -> int | None:
    """Queue ``trial`` (a failed ``FrozenTrial``) again: a ``WAITING`` trial with its parameters,
    ``system_attrs["failed_trial"]`` = its number (as Optuna's ``RetryFailedTrialCallback``),
    and its user attributes but the failure reason. Returns the new trial's number."""
    import optuna

    if not trial.params:
        return None  # killed before the sampler chose anything: nothing to repeat
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    system = {"failed_trial": trial.number, "retry_history": history}
    attrs = {k: v for k, v in trial.user_attrs.items() if k != REASON_KEY}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                              distributions=trial.distributions, user_attrs=attrs,
                                              system_attrs=system))
    return study.get_trials(deepcopy=False)[-1].number


def fail_trials(study: Study, trial_ids: list[int], reason: str, space: SearchSpace | None = None,
                requeue: bool = True) -> list[int]:
    """Fail each still-running trial of ``trial_ids`` with ``reason`` (user attribute
    ``fail_reason``; ``arch`` from its parameters when ``space`` is given) and, with
    ``requeue``, queue it again (``retry``). Returns the ids it failed (a trial finished by
    someone else meanwhile is left alone)."""
    import optuna

    storage = compat.storage_of(study)
    failed = []
    for tid in trial_ids:
        try:
            t = storage.get_trial(tid)
            if t.state.is_finished():
                continue
            attrs: dict[str, Any] = {REASON_KEY: reason}
            if space is not None and t.params and "arch" not in t.user_attrs:
                with contextlib.suppress(Exception):  # part of the parameters: no arch
                    attrs["arch"] = space.from_params(t.params, strict=False).key
            for key, value in attrs.items():
                storage.set_trial_user_attr(tid, key, value)
            if storage.set_trial_state_values(tid, state=optuna.trial.TrialState.FAIL):
                failed.append(tid)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    if requeue:
        for tid in failed:
            retry(study, storage.get_trial(tid))
    return failed


def fail_stale(study: Study, space: SearchSpace | None = None) -> list[int]:
    """Fail the stale trials of ``study`` (both rules of the module docstring, each failure with
    its reason) and queue them again when the storage was opened with ``retry_stale``; returns
    the ids failed here. A no-op on storages without heartbeats."""
    backend = _backend(study)
    grace = _grace(backend)
    if backend is None or grace is None:
        return []
    requeue = backend.get_heartbeat_stale_trial_callback() is not None
    stale = compat.stale_trial_ids(backend, compat.study_id(study))
    if stale is None:  # Optuna's public API only: both rules on the beats archlab records
        stale, never = compat.beatless_trial_ids(study, grace)
    else:
        never = unbeaten_trial_ids(study)
    silent = fail_trials(study, stale,
                         f"stale: no heartbeat for over {grace:g} s (its worker died)", space, requeue=requeue)
    unbeaten = fail_trials(study, never, f"stale: running for over {grace:g} s without a "
                           "heartbeat (its worker died before the trial began)", space, requeue=requeue)
    return silent + unbeaten
