"""What a worker does around Optuna's trial creation, so that every search ends cleanly.

``TrialGuard.install(study)`` wraps the study's storage in one worker:

- **exact total**: a new trial is created only while completed + running + queued trials are
  fewer than ``n_trials``, counted in the storage under the study lock (``_QueueEmpty``
  otherwise; queued trials, such as a dead worker's re-queued one, are still popped first);
- **stale trials under the same lock**: with ``sweep`` (the runner's ``fail_stale``), a dead
  worker's trial is failed and queued again under the study lock, right before the count, and
  Optuna's own unlocked stale pass is turned off; otherwise another worker could count between
  the failure and the re-queue, see one trial too few and run one too many;
- **failures end a run**: once ``max_failures`` trials failed since this run began (every
  worker's failures, counted in the storage), the next creation raises ``TooManyFailures`` with
  the last failure's reason, so an objective that returns NaN can never loop forever;
- **the trial in hand**: the id of the trial this worker is running (created or popped) is kept
  in ``current`` (and in the parent's shared ``slot`` when given), from its creation on; a
  background thread records its heartbeat every ``heartbeat_interval`` s from that moment, also
  while the sampler is still choosing (Optuna starts its own heartbeat only when the objective
  starts), so "RUNNING without a heartbeat" means a dead worker (see ``archlab.search.stale``);
- **clean Ctrl-C**: ``interruptible()`` installs a SIGINT handler that raises
  ``KeyboardInterrupt`` only inside ``evaluating()``, around the user's own objective and metric
  functions (Optuna then fails that trial and re-raises); elsewhere (sampler, storage reads and
  writes, Optuna's bookkeeping) it sets ``stop`` and the worker stops at the next safe point:
  the objective's start, the evaluation's start, the next trial's creation or the wait for
  other workers. Optuna's and SQLAlchemy's code is never interrupted half-way: Optuna's gave an
  ``UnboundLocalError``; in SQLAlchemy, an interrupt between a ``SELECT`` and its cursor's
  close makes it close the connection with the cursor still open (it treats
  ``KeyboardInterrupt`` as a disconnect), and that cursor, kept alive by the exception's
  traceback, holds SQLite's SHARED lock: the commit that fails the trial then waited for the
  60 s busy timeout (a hang of the Ctrl-C, beside this worker's heartbeat thread).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import optuna_compat as compat
from .errors import SearchError
from .storage import count_by_state

#: when ``max_failures`` is not given: at least this many failures are allowed
MIN_FAILURES = 10


class _QueueEmpty(Exception):
    """Raised instead of creating a trial beyond the study's total."""


class TooManyFailures(SearchError):
    """A run stopped because too many of its trials failed."""


def default_max_failures(n_trials: int | None) -> int | None:
    """``max(10, n_trials)``; ``None`` for a run without a trial count (then the limit is
    ``max(10, trials completed in this run)``, see ``TrialGuard``)."""
    return None if n_trials is None else max(MIN_FAILURES, int(n_trials))


class TrialGuard:
    """One worker's guard over trial creation (see the module docstring)."""

    def __init__(self, n_trials: int | Callable[[], int] | None, max_failures: int | None, lock: Any,
                 heartbeat_interval: float | None = None, slot: Any = None,
                 sweep: Callable[[], Any] | None = None) -> None:
        self.n_trials = n_trials
        self.sweep = sweep
        self.max_failures = max_failures
        self.lock = lock
        self.heartbeat_interval = heartbeat_interval
        self.slot = slot
        self.current: int | None = None
        self.stop = False
        self.in_objective = False
        self._raised = False
        self._start: dict[str, int] = {}
        self._storage: Any = None
        self._done = threading.Event()
        self._beat: threading.Thread | None = None

    # trial bookkeeping -------------------------------------------------------------------
    def _set_current(self, trial_id: int | None) -> None:
        self.current = trial_id
        if self.slot is not None:
            self.slot.value = -1 if trial_id is None else int(trial_id)

    def install(self, study: Any) -> None:
        """Wrap ``study``'s storage (``create_new_trial``, ``set_trial_state_values``; through
        ``optuna_compat.install_hooks``)."""
        import optuna

        S = optuna.trial.TrialState
        storage = self._storage = compat.storage_of(study)
        study_id = compat.study_id(study)
        self._start = count_by_state(storage, study_id)
        create, set_state = storage.create_new_trial, storage.set_trial_state_values

        def create_new_trial(sid: int, template_trial: Any = None) -> int:
            if template_trial is not None:  # a trial added or re-queued, not run here
                return create(sid, template_trial)
            if self.stop:
                raise KeyboardInterrupt
            with self.lock:
                if self.sweep is not None:
                    self.sweep()
                self._check(count_by_state(storage, study_id), study)
                trial_id = create(sid, None)
            self._set_current(trial_id)
            self._beat_now()
            return trial_id

        def set_trial_state_values(trial_id: int, state: Any, values: Any = None) -> bool:
            done = set_state(trial_id, state, values)
            if state == S.RUNNING and done:  # a queued trial popped by this worker
                self._set_current(trial_id)
                self._beat_now()
            elif state.is_finished() and trial_id == self.current:
                self._set_current(None)
            return done

        hooks: dict[str, Callable[..., Any]] = {"create_new_trial": create_new_trial,
                                                "set_trial_state_values": set_trial_state_values}
        if self.sweep is not None and compat.fast():  # Optuna's pass before each trial: unlocked
            hooks["_get_stale_trial_ids"] = lambda sid: []
        compat.install_hooks(study, **hooks)
        if self.heartbeat_interval and compat.heartbeat_interval(storage):
            self._beat = threading.Thread(target=self._beat_loop, name="archlab-heartbeat", daemon=True)
            self._beat.start()

    def _check(self, counts: dict[str, int], study: Any) -> None:
        live = counts.get("COMPLETE", 0) + counts.get("RUNNING", 0) + counts.get("WAITING", 0)
        total = self.n_trials() if callable(self.n_trials) else self.n_trials
        if total is not None and live >= total:
            raise _QueueEmpty
        failed = counts.get("FAIL", 0) - self._start.get("FAIL", 0)
        done = counts.get("COMPLETE", 0) - self._start.get("COMPLETE", 0)
        limit = self.max_failures if self.max_failures is not None else max(MIN_FAILURES, done)
        if failed >= limit:
            raise TooManyFailures(
                f"search stopped: {failed} trials failed in this run (limit {limit}; "
                f"max_failures / --max-failures raises it){_last_failure(study)}"
            )

    def sweep_stale(self) -> None:
        """Fail and re-queue stale trials under the study lock (see the module docstring)."""
        if self.sweep is not None:
            with self.lock:
                self.sweep()

    # heartbeat ---------------------------------------------------------------------------
    def _beat_now(self) -> None:
        if self._beat is None or self.current is None:
            return
        with contextlib.suppress(Exception):  # a missed beat is retried on the next tick
            compat.record_heartbeat(self._storage, self.current)

    def _beat_loop(self) -> None:
        while not self._done.wait(float(self.heartbeat_interval or 1)):
            self._beat_now()

    def close(self) -> None:
        """Stop the heartbeat thread."""
        self._done.set()
        if self._beat is not None:
            self._beat.join(timeout=5)

    # Ctrl-C ------------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.stop = True
        if self.in_objective and not self._raised:
            self._raised = True
            # a watchdog that interrupts says why on the slot (archlab.search.watchdog)
            raise KeyboardInterrupt(getattr(self.slot, "reason", None) or "interrupted")

    def interruptible(self) -> contextlib.AbstractContextManager[None]:
        """SIGINT handled as in the module docstring while inside (main thread only)."""
        return sigint_handler(self._on_sigint)

    def wrap(self, objective: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``objective`` that stops at its start when asked to (it is interrupted inside
        ``evaluating()`` only)."""

        def guarded(trial: Any) -> Any:
            if self.stop:
                self._raised = True
                with contextlib.suppress(Exception):  # the trial is still running: say why it fails
                    trial.set_user_attr("fail_reason", "interrupted before its evaluation began")
                raise KeyboardInterrupt
            return objective(trial)

        return guarded

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Around the user's own functions only (``TrialRunner.evaluating``), never around
        storage code: Ctrl-C raises ``KeyboardInterrupt`` inside; asked to stop before, raises
        it at the start (see the module docstring)."""
        if self.stop:
            self._raised = True
            raise KeyboardInterrupt(getattr(self.slot, "reason", None) or "interrupted")
        self.in_objective = True
        try:
            yield
        finally:
            self.in_objective = False


@contextlib.contextmanager
def sigint_handler(handler: Any) -> Iterator[None]:
    """``handler`` (a function or ``signal.SIG_IGN``) for SIGINT while inside; a no-op outside
    the main thread, where Python cannot install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def drop_lost_interrupts() -> None:
    """From now on, a Ctrl-C that lands in a finalizer or a weakref callback (where Python
    cannot raise it, prints "Exception ignored in ..." with a traceback, and drops it) is
    dropped without the traceback. For a process that keeps its own record of the Ctrl-C (the
    ``_on_sigint`` flag above) and ends soon after anyway (a worker)."""
    before = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is None or not issubclass(unraisable.exc_type, KeyboardInterrupt):
            before(unraisable)

    sys.unraisablehook = hook


class QuietFailures(logging.Filter):
    """Drops Optuna's two warnings (one with a traceback) for a trial that failed on Ctrl-C or
    with a NaN / infinite value: archlab records the reason in ``fail_reason`` and stops with one
    line; other failures are still logged."""

    _first = re.compile(r"^Trial (\d+) failed with parameters: .* because of the following error: "
                        r"(KeyboardInterrupt\(.*\)|The value (nan|inf|-inf) is not acceptable)", re.S)
    _second = re.compile(r"^Trial (\d+) failed with value ")

    def __init__(self) -> None:
        super().__init__()
        self._dropped: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        m = self._first.match(msg)
        if m:
            self._dropped.add(m.group(1))
            return False
        m = self._second.match(msg)
        if m and m.group(1) in self._dropped:
            self._dropped.discard(m.group(1))
            return False
        return True

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        """This filter on Optuna's optimisation logger while inside."""
        logger, f = logging.getLogger(compat.OPTIMIZE_LOGGER), cls()
        logger.addFilter(f)
        try:
            yield
        finally:
            logger.removeFilter(f)


def _last_failure(study: Any) -> str:
    """``"; last: trial N: REASON"`` for the study's latest failed trial with a reason."""
    import optuna

    try:
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    except Exception:
        return ""
    for t in sorted(failed, key=lambda t: t.number, reverse=True):
        reason = t.user_attrs.get("fail_reason")
        if reason:
            return f"; last: trial {t.number}: {reason}"
    return ""
