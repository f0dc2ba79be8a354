"""Worker processes of one search, and the parent that keeps them within bounds.

How workers start:

- with a ``recipe`` (``run_search(worker_recipe=...)``, which ``archlab search`` gives): the
  ``spawn`` start method. Each worker is a fresh interpreter that builds the search itself from
  the recipe (the experiment file is loaded in the child), so nothing the parent ran before
  (multi-threaded torch work, open connections) can leave it deadlocked. Each uses
  ``cpu_count // workers`` torch threads (unless ``OMP_NUM_THREADS`` is set).
- without one (Python callers whose objectives are closures): ``fork``, and the worker sets
  torch to one thread before anything else. GNU OpenMP is not fork-safe: a child forked after
  the parent ran a parallel region hangs in its first one with more than one thread.

What the parent guarantees, whatever the workers do:

- ``timeout`` holds: workers stop taking trials at the deadline; one still running
  ``deadline_grace(timeout)`` later is asked to stop (SIGINT) and killed ``STOP_WAIT_S`` after
  that, stuck in native code or not;
- one Ctrl-C (SIGINT) ends the parent and every worker within ``STOP_WAIT_S`` seconds, with no
  traceback (a worker holds SIGINT back until it can handle it);
  further interrupts during that cleanup are ignored, so no worker is left behind, and a worker
  whose parent dies is killed by the kernel (``PR_SET_PDEATHSIG``, Linux);
- nothing is lost: the trial a killed worker (by the parent or by anyone's ``kill -9``) was
  running is failed at once with its reason and queued again with the same parameters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import SearchError
from .trial_guard import drop_lost_interrupts, sigint_handler

if TYPE_CHECKING:
    from .runner import _Run

#: seconds between asking a worker to stop (SIGINT) and killing it (SIGKILL)
STOP_WAIT_S = 5.0
#: at most this many seconds after the deadline for a worker to finish its trial
DEADLINE_GRACE_S = 10.0
#: the parent checks its workers at least this often (seconds)
POLL_S = 0.5


class WorkerWarning(RuntimeWarning):
    """A worker was killed or stopped by the parent (``archlab search`` prints one line each)."""


def deadline_grace(timeout: float) -> float:
    """Seconds a worker may run past the deadline to finish its trial: a quarter of the
    timeout, between 2 and ``DEADLINE_GRACE_S``."""
    return min(DEADLINE_GRACE_S, max(2.0, 0.25 * float(timeout)))


@dataclass
class _Worker:
    index: int
    proc: Any
    conn: Any
    slot: Any
    reaped: bool = False
    stopped: str | None = None  # why the parent stopped it
    failed_trial: int | None = None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_workers(run: _Run, workers: int, recipe: Callable[[], Mapping[str, Any]] | None = None) -> None:
    """Run ``run`` (a ``runner._Run``) in ``workers`` processes and supervise them (see the
    module docstring). Raises ``KeyboardInterrupt`` after a Ctrl-C, ``SearchError`` when a
    worker failed (one message when all failed alike)."""
    import multiprocessing as mp

    import optuna

    verbosity = optuna.logging.get_verbosity()
    method = "spawn" if recipe is not None else "fork"
    ctx = mp.get_context("spawn") if method == "spawn" else mp.get_context("fork")
    threads = max(1, _cpus() // workers) if method == "spawn" else 1
    procs: list[_Worker] = []
    grace_end = None if run.deadline is None else run.deadline + deadline_grace(max(0.0, run.deadline - time.time()))
    if method == "spawn":  # started here, not inside the block: starting it unblocks SIGINT again
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    try:
        with _sigint_deferred():  # held back, not lost; the workers inherit the mask (see _worker_main)
            for i in range(workers):
                slot = ctx.Value("q", -1, lock=False)
                parent_end, child_end = ctx.Pipe(duplex=False)
                args = (recipe, run.deadline) if recipe is not None else (run, None)
                p = ctx.Process(target=_worker_main, daemon=False,
                                args=(*args, i, child_end, slot, threads, os.getpid(), verbosity))
                p.start()
                child_end.close()
                procs.append(_Worker(i, p, parent_end, slot))
        _supervise(run, procs, grace_end)
    except KeyboardInterrupt:
        with sigint_handler(signal.SIG_IGN):  # a second Ctrl-C must not cut the cleanup short
            _stop(run, procs, "interrupted (Ctrl-C)")
        raise
    _report(procs)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread (kept pending, delivered on leaving) while inside."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """SIGINT held back while inside and raised as ``KeyboardInterrupt`` on leaving: blocked in
    this thread (processes started inside inherit the block), and only recorded when another
    thread of this process (an OpenMP thread, say) takes it."""
    got: list[int] = []
    with sigint_handler(lambda signum, frame: got.append(signum)), _sigint_blocked():
        yield
    if got:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigint_noted() -> Iterator[tuple[list[int], int | None]]:
    """SIGINT only noted while inside (``got``), never raised where it lands (a finalizer or a
    weakref callback would print a traceback and drop it), and written to ``fd`` (readable when
    one came; ``None`` outside the main thread, where no signal arrives)."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got, None
        return
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        with sigint_handler(lambda signum, frame: got.append(signum)):
            before = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            try:
                yield got, r
            finally:
                signal.set_wakeup_fd(before)
    finally:
        os.close(r)
        os.close(w)


def _supervise(run: _Run, procs: list[_Worker], grace_end: float | None) -> None:
    from multiprocessing.connection import wait

    with _sigint_noted() as (interrupted, wake):
        while True:
            if interrupted:
                raise KeyboardInterrupt  # here, where run_workers handles it
            _reap(run, procs)
            alive = [w for w in procs if w.proc.is_alive()]
            if not alive:
                return
            now = time.time()
            if grace_end is not None and now >= grace_end:
                _stop(run, procs, "stopped by the parent: still running past the search's deadline")
                break
            left = POLL_S if grace_end is None else min(POLL_S, max(0.0, grace_end - now))
            ready = wait([w.proc.sentinel for w in alive] + ([wake] if wake is not None else []), timeout=left)
            if wake is not None and wake in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 4096)  # any signal with a handler writes here; drained each time
    if interrupted:  # during the deadline's stop
        raise KeyboardInterrupt


def _stop(run: _Run, procs: list[_Worker], reason: str) -> None:
    """Ask live workers to stop (SIGINT), kill those still alive ``STOP_WAIT_S`` later, then
    fail and re-queue the trials of the killed ones."""
    from multiprocessing.connection import wait

    alive = [w for w in procs if w.proc.is_alive()]
    for w in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.proc.pid, signal.SIGINT)
    end = time.time() + STOP_WAIT_S
    while alive and time.time() < end:
        wait([w.proc.sentinel for w in alive], timeout=max(0.0, end - time.time()))
        alive = [w for w in alive if w.proc.is_alive()]
    for w in alive:
        w.stopped = reason
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.proc.pid, signal.SIGKILL)
    for w in procs:
        w.proc.join(timeout=STOP_WAIT_S)
    _reap(run, procs)


def _reap(run: _Run, procs: list[_Worker]) -> None:
    """Fail and re-queue the trial of each worker that ended while holding one."""
    ended = [w for w in procs if not w.reaped and w.proc.exitcode is not None]
    if not ended:
        return
    todo: dict[int, tuple[_Worker, str]] = {}
    for w in ended:
        w.reaped = True
        tid = int(w.slot.value)
        if tid >= 0:
            todo[tid] = (w, w.stopped or f"its worker died (exit code {w.proc.exitcode}) during the trial")
    if not todo:
        return
    from .optuna_compat import storage_of
    from .stale import fail_trials

    study = run.open_study()
    for tid, (w, why) in todo.items():
        if fail_trials(study, [tid], why, run.space):
            w.failed_trial = storage_of(study).get_trial(tid).number


def _report(procs: list[_Worker]) -> None:
    errors: list[tuple[int, str, str]] = []
    interrupted = False
    for w in procs:
        try:
            msg = w.conn.recv() if w.conn.poll() else None
        except (EOFError, OSError):
            msg = None
        code = w.proc.exitcode
        if code == 130:
            interrupted = True
        elif code not in (0, None) and msg is not None:
            errors.append((w.index, *msg))
        elif code not in (0, None):
            what = w.stopped or f"ended with exit code {code}"
            where = f"; its trial {w.failed_trial} failed and was queued again" if w.failed_trial is not None else ""
            warnings.warn(f"worker {w.index} {what}{where}", WorkerWarning, stacklevel=3)
    if interrupted:
        raise KeyboardInterrupt
    if errors:
        from .trial_guard import TooManyFailures

        if all(kind == TooManyFailures.__name__ for _, kind, _ in errors):
            raise TooManyFailures(errors[0][2])  # every worker stopped for failures: say it once
        texts = {m for _, _, m in errors}
        raise SearchError(texts.pop() if len(texts) == 1 else "; ".join(f"worker {i}: {m}" for i, _, m in errors))


# in the worker --------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def _limit_threads(threads: int) -> None:
    """``threads`` torch / OpenMP threads here (a forked worker must use 1: see the module
    docstring); ``OMP_NUM_THREADS`` given by the user wins in a spawned worker."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
        return
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def _worker_main(build: Any, deadline: float | None, index: int, conn: Any, slot: Any, threads: int,
                 parent_pid: int, verbosity: int) -> None:
    """A worker process: ``build`` is the ``_Run`` itself (forked) or the recipe (spawned)."""
    _die_with_parent(parent_pid)
    _limit_threads(threads)
    with contextlib.suppress(Exception):  # `kill -USR1 PID` prints a stuck worker's stacks
        import faulthandler

        faulthandler.register(signal.SIGUSR1, all_threads=True)
    code = 0
    drop_lost_interrupts()  # its trial guard keeps the Ctrl-C; the parent kills it if need be
    try:
        # started with SIGINT blocked (the parent's mask): handle it from here on, so an
        # interrupt during start-up (even one already pending) ends this worker without a traceback
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        if callable(build) and not hasattr(build, "work"):
            import optuna

            from .runner import _prepare

            optuna.logging.set_verbosity(verbosity)
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

            kwargs = dict(build())
            run, storage = _prepare(**kwargs)
            run.deadline = deadline
            run.work(index, storage, slot=slot)
        else:
            build.work(index, slot=slot)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        kind = "" if isinstance(exc, SearchError) else f"{type(exc).__name__}: "
        with contextlib.suppress(Exception):
            conn.send((type(exc).__name__, f"{kind}{exc}"))
        code = 1
    finally:
        # ending anyway: a second Ctrl-C (the terminal's and the parent's forwarded one can both
        # arrive) must not interrupt the clean-up below with a traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        conn.close()
        with contextlib.suppress(Exception):  # finalizers (semaphores), not threads: never hangs
            from multiprocessing import util

            util._exit_function()  # type: ignore[attr-defined]  # private, no stub
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)
