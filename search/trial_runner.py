"""The objective Optuna calls for each trial: suggest an architecture, reuse or evaluate, record.

Each trial gets the user attributes ``arch`` (the architecture JSON; its flat parameters are
the trial's Optuna params), ``metrics`` (every objective and metric) and, when an earlier
trial's result was reused, ``reused_from`` (that trial's number); constraints go through
``trial.set_constraint``. Failed trials keep ``arch`` and say why in ``fail_reason`` (the
exception, ``interrupted``, or ``objective 'x' returned nan``: a NaN or infinite objective
fails its trial instead of entering the front).

What a trial costs on top of Optuna's own work (the loop overhead ``bench/search.py``
measures). On an RDB storage the user attributes are written in the same transaction that
records the trial's state and values (Optuna writes each attribute in a transaction of its
own, which was most of archlab's overhead), so a completed trial never lacks them and a running
trial shows its parameters only. Architectures evaluated by other workers are found by
re-reading the study's completed trials; that read is rationed to at most
``1 / REFRESH_FACTOR`` of the loop's time (the worker's own evaluations are always known, so a
single worker never evaluates an architecture twice).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from archlab.spaces import Arch, SearchSpace

from . import optuna_compat as compat
from .objectives import Objective, SearchContext, resolve

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial, Trial, TrialState

#: the reuse index is re-read from storage at most every ``REFRESH_FACTOR`` times the last read's cost
REFRESH_FACTOR = 50.0
#: ... and at least this often (seconds) when an architecture is not known yet
REFRESH_MAX_S = 10.0


def attrs_with_final_state(study: Study, space: SearchSpace) -> dict[int, dict[str, Any]] | None:
    """On an RDB storage, make ``study``'s storage write a trial's pending user attributes in
    the transaction that records its final state, and return the pending dict
    (``{trial_id: attrs}``); ``None`` (nothing changed) on other storages, or with Optuna's
    public API only (``optuna_compat``: then each attribute is written on its own).

    Wraps ``set_trial_state_values`` of the study's storage: before Optuna's own code updates
    the state and values, the attributes are added to the thread's scoped session, which that
    code then commits. A running trial without pending attributes that is being finished (a
    dead worker's trial failed by the heartbeat check) gets ``arch`` from its parameters and,
    failed without a reason, ``fail_reason``.
    """
    import optuna

    storage = compat.storage_of(study)
    backend = compat.rdb_backend(storage)
    write = compat.attrs_in_state_transaction(backend)
    if write is None:
        return None
    pending: dict[int, dict[str, Any]] = {}
    original = storage.set_trial_state_values

    def arch_of(trial_id: int, state: TrialState) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        try:
            t = backend.get_trial(trial_id)
            if t.state.is_finished():
                return None
            if state == optuna.trial.TrialState.FAIL and "fail_reason" not in t.user_attrs:
                # failed by someone else than its worker: Optuna's heartbeat check
                out["fail_reason"] = "stale: its worker stopped sending heartbeats (it died)"
            if "arch" not in t.user_attrs and t.params:
                out["arch"] = space.from_params(t.params, strict=False).key
        except Exception:  # a trial killed while being suggested has part of its parameters
            pass
        return out or None

    def set_trial_state_values(trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        attrs = pending.pop(trial_id, None)
        if state.is_finished():
            attrs = attrs if attrs is not None else arch_of(trial_id, state)
            if attrs:
                write(trial_id, attrs)
        return original(trial_id, state, values)

    compat.install_hooks(study, set_trial_state_values=set_trial_state_values)
    return pending


class TrialRunner:
    """The objective function given to Optuna: suggest an arch, reuse or evaluate, record."""

    def __init__(self, space: SearchSpace, objectives: list[Objective], metrics: Mapping[str, Any],
                 constraints: Mapping[str, float], ctx: SearchContext) -> None:
        self.space = space
        self.objectives = objectives
        self.fns = {o.name: resolve(o.source, ctx) for o in objectives}
        self.fns.update({k: resolve(v, ctx) for k, v in metrics.items() if k not in self.fns})
        self.constraints = dict(constraints)
        self.known: dict[str, tuple[list[float], dict[str, float], int]] = {}
        self.indexed: set[int] = set()
        self._next_refresh = float("-inf")
        self._pending: dict[int, dict[str, Any]] | None = None
        #: the context the user's functions run in (``TrialGuard.evaluating``: the only place
        #: Ctrl-C interrupts, never storage code)
        self.evaluating: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext

    def attach(self, study: Study) -> None:
        """Record user attributes with each trial's final state on ``study``'s storage (see
        ``attrs_with_final_state``)."""
        self._pending = attrs_with_final_state(study, self.space)

    def _record(self, trial: Trial | FrozenTrial, attrs: dict[str, Any]) -> None:
        if self._pending is None:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            return
        self._pending[compat.trial_id(trial)] = attrs
        compat.cache_user_attrs(trial, attrs)

    def _non_finite(self, metrics: Mapping[str, float]) -> str | None:
        """``"objective 'x' returned nan"`` for the first objective (or constrained metric) whose
        value is NaN or infinite, else ``None``."""
        for o in self.objectives:
            if not math.isfinite(metrics[o.name]):
                return f"objective {o.name!r} returned {metrics[o.name]}"
        for name in self.constraints:
            if not math.isfinite(metrics[name]):
                return f"constrained metric {name!r} returned {metrics[name]}"
        return None

    def lookup(self, key: str, study: Study) -> tuple[list[float], dict[str, float], int] | None:
        """``(values, metrics, trial number)`` of an earlier evaluation of ``key``, or ``None``."""
        if key in self.known:
            return self.known[key]
        now = time.monotonic()
        if now >= self._next_refresh:
            self._refresh(study)
            done = time.monotonic()
            self._next_refresh = done + min(REFRESH_FACTOR * (done - now), REFRESH_MAX_S)
        return self.known.get(key)

    def _refresh(self, study: Study) -> None:
        import optuna

        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.number in self.indexed:
                continue
            self.indexed.add(t.number)
            k = t.user_attrs.get("arch")
            if k and k not in self.known and t.values is not None:
                self.known[k] = (list(t.values), dict(t.user_attrs.get("metrics") or {}), t.number)

    def __call__(self, trial: Trial) -> list[float]:
        try:
            arch: Arch = self.space.suggest(trial)
        except BaseException as exc:  # interrupted (or a bad space) while choosing
            self._record(trial, {"fail_reason": _why(exc)})
            raise
        key = arch.key
        try:
            hit = self.lookup(key, trial.study)
            if hit is not None:
                values, metrics, source = hit
                attrs: dict[str, Any] = {"arch": key, "reused_from": source, "metrics": metrics}
            else:
                with self.evaluating():
                    metrics = {name: float(fn(arch)) for name, fn in self.fns.items()}
                values = [metrics[o.name] for o in self.objectives]
                bad = self._non_finite(metrics)
                if bad:  # a failed trial (Optuna fails a NaN value), with the reason; never reused
                    self._record(trial, {"arch": key, "fail_reason": bad})
                    return [math.nan] * len(values)
                self.known[key] = (values, metrics, trial.number)
                attrs = {"arch": key, "metrics": metrics}
        except BaseException as exc:  # a failed trial keeps its architecture and says why
            self._record(trial, {"arch": key, "fail_reason": _why(exc)})
            raise
        self._record(trial, attrs)
        for name, bound in self.constraints.items():
            trial.set_constraint(name, metrics[name] - bound)
        if self.space.constraints:
            trial.set_constraint("space", float(len(self.space.violated(arch))))
        return values


def _why(exc: BaseException) -> str:
    """A failed trial's ``fail_reason``: ``interrupted`` (or the interrupter's reason) or
    ``Type: message`` (one line)."""
    why = (str(exc) or "interrupted") if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    return " ".join(why.split())[:500]
