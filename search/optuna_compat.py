"""The one module that reaches into Optuna's internals, behind a version gate.

archlab's search leans on a few things Optuna does not promise: a study's storage object
(``study._storage``) and id, a trial's id, instance patches of the storage's
``create_new_trial`` / ``set_trial_state_values`` and of ``study._pop_waiting_trial_id``, the
RDB table models (``optuna.storages._rdb.models``) for bulk SQL reads and counts, the stale
heartbeat query, the trial cache wrapper and writing attributes inside the transaction that
records a trial's state. Every such use is a function here; no other module of archlab touches
an ``_``-prefixed Optuna name (``tests/test_import_direction.py`` checks it).

``SUPPORTED`` is the Optuna range these fast paths are tested on. Inside it (``fast()``), they
are used. Outside it, or with ``ARCHLAB_OPTUNA_FALLBACK=1`` (or ``use_fallback(True)``), every
function takes Optuna's public API instead, slower but with the same trials, parameters and
values, and one warning says so once:

- studies opened through ``create_study`` / ``load_study`` here sit on a ``HookedStorage``, a
  public ``BaseStorage`` that forwards to the real one; archlab's hooks (the trial guard, the
  SQLite pop lock) are set on it instead of on Optuna's objects;
- ids come from the storage's public lookups; trial attributes are written one by one;
- bulk reads and counts use ``get_all_trials`` (``rdb_models()`` is ``None``);
- Optuna's heartbeat rows cannot be read through its public API, so each heartbeat also
  writes its time as a trial system attribute (``BEAT_KEY``) and a trial is stale when it
  started more than the grace period ago and that beat is missing or older
  (``beatless_trial_ids``); stale trials are then failed, with their reason, and re-queued
  exactly as on the fast path (``archlab.search.stale``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: the Optuna versions whose internals the fast paths are tested on (pyproject pins the same range)
SUPPORTED = (">=5.0", "<5.1")
#: set to 1 / true / yes to force the public-API fallback whatever the version
ENV_FALLBACK = "ARCHLAB_OPTUNA_FALLBACK"
#: fallback mode: system attribute with the unix time of a running trial's last heartbeat
BEAT_KEY = "archlab_heartbeat"
#: the logger Optuna's optimisation loop reports failed trials on (``trial_guard.QuietFailures``)
OPTIMIZE_LOGGER = "optuna.study._optimize"

_log = logging.getLogger(__name__)
_forced: bool | None = None
_warned = False
#: study -> the HookedStorage it was opened on (fallback mode)
_HOOKED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


@functools.cache
def version_supported() -> bool:
    """Whether the installed ``optuna.__version__`` lies in ``SUPPORTED`` (checked once)."""
    import optuna
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return Version(optuna.__version__) in SpecifierSet(",".join(SUPPORTED))


def use_fallback(on: bool | None) -> None:
    """Force the public-API fallback (``True``), the fast paths (``False``, only honoured inside
    ``SUPPORTED``) or go back to the version gate and ``ARCHLAB_OPTUNA_FALLBACK`` (``None``)."""
    global _forced
    _forced = on


def fast() -> bool:
    """True when the fast paths (Optuna internals) are used; logs once when they are not."""
    global _warned
    env = os.environ.get(ENV_FALLBACK, "").strip().lower() in ("1", "true", "yes", "on")
    forced = _forced if _forced is not None else (True if env else None)
    on = version_supported() and not forced
    if not on and not _warned:
        _warned = True
        import optuna

        # a warning when the version decides (a surprise), a note when the user asked for it
        level = logging.INFO if forced else logging.WARNING
        why = (f"{ENV_FALLBACK} / use_fallback" if forced else
               f"optuna {optuna.__version__} is outside the tested range {','.join(SUPPORTED)}")
        _log.log(level, "archlab: using Optuna's public API only (%s): same results, slower search and reads", why)
    return on


# studies and their storages ------------------------------------------------------------
class _Forward:
    """A method forwarded to the wrapped storage."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any) -> Any:
        if obj is None:
            return self
        return getattr(obj.inner, self.name)


@functools.cache
def _hooked_class() -> type:
    """``HookedStorage``: a ``BaseStorage`` that forwards every public method (and public
    attribute, such as ``record_heartbeat`` or ``engine``) to ``inner``. Instance attributes
    set on it (archlab's hooks) shadow the forwarded methods."""
    import optuna

    base = optuna.storages.BaseStorage
    names = [n for n in dir(base) if not n.startswith("_") and callable(getattr(base, n))]
    ns: dict[str, Any] = {n: _Forward(n) for n in names}

    def __init__(self: Any, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self: Any, name: str) -> Any:
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    ns.update(__init__=__init__, __getattr__=__getattr__, __abstractmethods__=frozenset())
    return type("HookedStorage", (base,), ns)


def _opened(study: Any, hooked: Any) -> Any:
    if hooked is not None:
        _HOOKED[study] = hooked
    return study


def create_study(*, storage: Any, **kwargs: Any) -> Any:
    """``optuna.create_study(storage=storage, **kwargs)``; in fallback mode on a ``HookedStorage``."""
    import optuna

    hooked = None if fast() else _hooked_class()(storage)
    return _opened(optuna.create_study(storage=hooked or storage, **kwargs), hooked)


def load_study(*, storage: Any, **kwargs: Any) -> Any:
    """``optuna.load_study(storage=storage, **kwargs)``; in fallback mode on a ``HookedStorage``."""
    import optuna

    hooked = None if fast() else _hooked_class()(storage)
    return _opened(optuna.load_study(storage=hooked or storage, **kwargs), hooked)


def storage_of(study: Any) -> Any:
    """The storage object ``study`` reads and writes through (hooks go on it)."""
    if fast():
        return study._storage
    hooked = _HOOKED.get(study)
    if hooked is None:
        from .errors import SearchError

        raise SearchError("with Optuna's public API only, archlab needs the study opened by "
                          "archlab.search.optuna_compat.load_study / create_study")
    return hooked


def study_id(study: Any) -> int:
    """``study``'s id in its storage."""
    if fast():
        return int(study._study_id)
    return int(storage_of(study).get_study_id_from_name(study.study_name))


def trial_id(trial: Any) -> int:
    """The storage id of a live ``optuna.Trial``."""
    if fast():
        return int(trial._trial_id)
    storage = storage_of(trial.study)
    return int(storage.get_trial_id_from_study_id_trial_number(study_id(trial.study), trial.number))


def set_trial_user_attr(study: Any, trial: Any, key: str, value: Any) -> None:
    """Set a user attribute of ``trial`` (a ``FrozenTrial`` of ``study``, e.g. the one a
    sampler's ``before_trial`` gets) in the storage, visible to other workers at once."""
    storage = storage_of(study)
    tid = int(trial._trial_id) if fast() else int(
        storage.get_trial_id_from_study_id_trial_number(study_id(study), trial.number))
    storage.set_trial_user_attr(tid, key, value)


def rdb_backend(storage: Any) -> Any:
    """The ``RDBStorage`` behind ``storage`` (a hooked or cached one unwrapped), else ``None``.
    Fallback: only a plain or hooked ``RDBStorage`` (Optuna's cache is not unwrapped)."""
    import optuna

    storage = getattr(storage, "inner", storage) if type(storage) is _hooked_class() else storage
    if fast():
        storage = getattr(storage, "_backend", storage)
    return storage if isinstance(storage, optuna.storages.RDBStorage) else None


def rdb_models() -> Any:
    """``optuna.storages._rdb.models`` (Optuna's table models), or ``None`` in fallback mode."""
    if not fast():
        return None
    from optuna.storages._rdb import models

    return models


def cached(rdb: Any) -> Any:
    """``rdb`` wrapped in Optuna's trial cache (a growing study read incrementally); as is in
    fallback mode."""
    if not fast():
        return rdb
    import optuna

    return optuna.storages.get_storage(rdb)


def heartbeat_interval(storage: Any) -> int | None:
    """The storage's heartbeat interval (s), ``None`` when it has none (public API)."""
    get = getattr(storage, "get_heartbeat_interval", None)
    try:
        return get() if callable(get) else None
    except Exception:
        return None


def stale_trial_ids(backend: Any, sid: int) -> list[int] | None:
    """Ids of the study's ``RUNNING`` trials whose heartbeat is older than the grace period
    (Optuna's rule); ``None`` in fallback mode (use ``fail_stale_public``)."""
    if not fast():
        return None
    return [int(i) for i in backend._get_stale_trial_ids(sid)]


def record_heartbeat(storage: Any, trial_id: int) -> None:
    """Record a heartbeat of the running trial ``trial_id`` (Optuna's ``record_heartbeat``);
    in fallback mode also its time (unix s) as the system attribute ``BEAT_KEY``, which
    ``beatless_trial_ids`` reads."""
    storage.record_heartbeat(trial_id)
    if not fast():
        import time

        storage.set_trial_system_attr(trial_id, BEAT_KEY, time.time())


def beatless_trial_ids(study: Any, grace: float, now: float | None = None) -> tuple[list[int], list[int]]:
    """Fallback of the stale check, public API only: ids of ``study``'s ``RUNNING`` trials that
    started more than ``grace`` s ago (clock of this machine) and whose last ``BEAT_KEY`` beat
    (``record_heartbeat``) is older than ``grace`` s, then those with no beat at all."""
    import datetime as dt

    import optuna

    now = time_now() if now is None else now
    start_cutoff = dt.datetime.fromtimestamp(now - grace)
    storage, sid = storage_of(study), study_id(study)
    old: list[int] = []
    never: list[int] = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        beat = t.system_attrs.get(BEAT_KEY)
        if t.datetime_start is None or t.datetime_start >= start_cutoff or (beat is not None and beat >= now - grace):
            continue
        tid = int(storage.get_trial_id_from_study_id_trial_number(sid, t.number))
        (never if beat is None else old).append(tid)
    return old, never


def time_now() -> float:
    """``time.time()`` (unix s)."""
    import time

    return time.time()


# hooks on a study's storage ----------------------------------------------------------------
def install_hooks(study: Any, **methods: Callable[..., Any]) -> Any:
    """Replace storage methods (``create_new_trial``, ``set_trial_state_values``) of ``study``'s
    storage with ``methods``, each taking the method's own arguments; returns the storage.
    Fast: instance attributes on Optuna's storage object. Fallback: on the ``HookedStorage``."""
    storage = storage_of(study)
    for name, fn in methods.items():
        setattr(storage, name, fn)
    return storage


def lock_pop(study: Any, lock: Any) -> None:
    """Serialise popping a queued (``WAITING``) trial with ``lock`` (SQLite has no
    ``SELECT ... FOR UPDATE``: two workers could pop the same trial). Fast: around Optuna's
    ``Study._pop_waiting_trial_id``. Fallback: the storage's move to ``RUNNING`` happens under
    the lock, after checking the trial is still ``WAITING``."""
    if fast():
        pop = study._pop_waiting_trial_id

        def locked_pop() -> int | None:
            with lock:
                return pop()

        study._pop_waiting_trial_id = locked_pop
        return
    import optuna

    S = optuna.trial.TrialState
    storage = storage_of(study)
    set_state = storage.set_trial_state_values

    def set_trial_state_values(trial_id: int, state: Any, values: Any = None) -> bool:
        if state != S.RUNNING:
            return set_state(trial_id, state, values)
        with lock:
            if storage.inner.get_trial(trial_id).state != S.WAITING:
                return False
            return set_state(trial_id, state, values)

    storage.set_trial_state_values = set_trial_state_values


def attrs_in_state_transaction(backend: Any) -> Callable[[int, Mapping[str, Any]], None] | None:
    """A function ``write(trial_id, attrs)`` that adds user attributes to the scoped session
    the storage's next ``set_trial_state_values`` commits (one transaction for attributes,
    state and values), or ``None`` in fallback mode / when this Optuna has no such session."""
    if not fast() or backend is None or getattr(backend, "_set_trial_attr_without_commit", None) is None:
        return None
    import json

    models = rdb_models()
    write_one = backend._set_trial_attr_without_commit
    insert = models.TrialUserAttributeModel.__table__.insert()

    def write(trial_id: int, attrs: Mapping[str, Any]) -> None:
        session = backend.scoped_session()  # the one set_trial_state_values goes on to use
        rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
        try:  # one INSERT: these keys are new (written here only, once per trial)
            session.execute(insert, rows)
        except Exception:  # a key already there: Optuna's upsert, key by key
            session.rollback()
            try:
                for key, value in attrs.items():
                    write_one(session, models.TrialUserAttributeModel, trial_id, key, value)
            except Exception:
                session.rollback()
                session.close()

    return write


def cache_user_attrs(trial: Any, attrs: Mapping[str, Any]) -> None:
    """Show ``attrs`` in the live trial's cached frozen trial (written to storage later, with
    its state); a no-op in fallback mode."""
    if not fast():
        return
    cached_trial = getattr(trial, "_cached_frozen_trial", None)
    if cached_trial is not None:
        cached_trial.user_attrs.update(attrs)


@contextlib.contextmanager
def fallback(on: bool = True) -> Iterator[None]:
    """``use_fallback(on)`` while inside (tests run both paths with it)."""
    old = _forced
    use_fallback(on)
    try:
        yield
    finally:
        use_fallback(old)
