"""``run_alone``: one worker in this process, its ``timeout`` held without a parent process.

With several workers the parent enforces the deadline (``archlab.search.workers``). With one,
the search runs in the calling process, so a watchdog thread stands in for the parent:

- ``deadline_grace(timeout)`` past the deadline, a trial still running gets its
  ``fail_reason`` and the process an interrupt (SIGINT, handled by the worker's ``TrialGuard``):
  an objective running Python code stops there, the trial is failed, and the search returns
  as any search that reached its timeout;
- a trial stuck in native code (where no Python signal handler runs) ``STOP_WAIT_S`` after
  that is failed and queued again from the watchdog's own storage connection, one line says
  so on stderr, and the process exits with status 2 (``os._exit``: nothing else can end a
  native call from another thread). Nothing is lost: the queued copy runs on the next run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from . import optuna_compat as compat
from .stale import REASON_KEY, fail_trials
from .workers import STOP_WAIT_S, deadline_grace

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from .runner import _Run

#: exit status of a process whose only worker was stuck past its deadline
STUCK_EXIT = 2


class _Slot:
    """The id of the trial in hand (``TrialGuard`` writes it; -1 when none) and, once the
    watchdog interrupts, why (the interrupted trial's ``fail_reason``)."""

    value = -1
    reason: str | None = None


def run_alone(run: _Run, storage: BaseStorage) -> None:
    """Run ``run`` (a ``runner._Run``) as worker 0 in this process, on ``storage``, holding its
    deadline as the module docstring says. Outside the main thread (no signals there) or
    without a deadline it is plain ``run.work``."""
    slot = _Slot()
    if run.deadline is None or threading.current_thread() is not threading.main_thread():
        run.work(0, storage, slot)
        return
    grace_end = run.deadline + deadline_grace(max(0.0, run.deadline - time.time()))
    done = threading.Event()
    fired = threading.Event()
    watcher = threading.Thread(target=_watch, args=(run, slot, grace_end, done, fired),
                               name="archlab-deadline", daemon=True)
    watcher.start()
    try:
        run.work(0, storage, slot)
    except KeyboardInterrupt:
        if not fired.is_set():
            raise  # a real Ctrl-C
    finally:
        done.set()


def _watch(run: _Run, slot: _Slot, grace_end: float, done: threading.Event, fired: threading.Event) -> None:
    if done.wait(max(0.0, grace_end - time.time())) or run.deadline is None:
        return
    late = time.time() - run.deadline
    tid = int(slot.value)
    reason = f"stopped: still running {late:.0f} s past the search's deadline"
    study = run.open_study()
    if tid >= 0:
        try:
            compat.storage_of(study).set_trial_user_attr(tid, REASON_KEY, reason)
        except Exception:  # finished meanwhile: nothing to stop
            tid = -1
    slot.reason = reason
    fired.set()
    os.kill(os.getpid(), signal.SIGINT)
    if done.wait(STOP_WAIT_S):
        return
    failed = fail_trials(study, [tid], f"{reason}, stuck (no Python code ran for {STOP_WAIT_S:g} s)",
                         run.space) if tid >= 0 else []
    number = compat.storage_of(study).get_trial(failed[0]).number if failed else None
    what = f"trial {number} was failed and queued again" if number is not None else "no trial was in hand"
    sys.stderr.write(f"archlab: error: search stopped at its timeout with its only worker stuck in native code; "
                     f"{what} (re-run to continue)\n")
    sys.stderr.flush()
    os._exit(STUCK_EXIT)
