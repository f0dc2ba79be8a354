"""Where studies live: turn a storage spec (URL, path or Optuna storage) into an Optuna storage.

Accepted specs:

- an Optuna storage object (returned as is);
- an SQLAlchemy URL Optuna understands (``sqlite:///runs/x/study.db``,
  ``postgresql+psycopg2://user@host:5432/db``, ``mysql+pymysql://...``);
- ``journal:///path/to/study.log`` or a path ending in ``.log``/``.journal``/``.jsonl``: Optuna's
  journal file backend (for shared file systems; it has no heartbeat);
- a path to an SQLite file (``.db``, ``.sqlite``, ``.sqlite3``) or to a run directory holding
  ``study.db``.

``open_storage`` is the one function that opens storages. Readers (``must_exist=True``) never
create a database: a missing SQLite or journal file is an error, not a silently created empty
study. ``read_only=True`` (the results API and the dashboard) goes further: the connection
itself cannot write (see ``_open_read_only``). SQLite URLs are parsed in one place
(``sqlite_file``). Optuna is imported inside the functions, so importing this module stays
cheap.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.trial import TrialState

from archlab.core.errors import ArchlabError
from archlab.core.layout import RunLayout

from . import optuna_compat as compat

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
JOURNAL_SCHEME = "journal:///"


class StorageError(ArchlabError):
    """A study storage cannot be opened or reached."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def storage_url(spec: str | Path) -> str:
    """The canonical URL of a storage spec (``sqlite:///...``, ``journal:///...`` or as given)."""
    text = str(spec)
    if "://" in text:
        return text
    path = Path(text)
    if path.is_dir():
        path = RunLayout(path).study_db
    if path.suffix in JOURNAL_SUFFIXES:
        return JOURNAL_SCHEME + str(path)
    if path.suffix in SQLITE_SUFFIXES:
        return f"sqlite:///{path}"
    raise StorageError(
        f"storage {text!r}: not a URL, a run directory or a file ending in "
        f"{', '.join(SQLITE_SUFFIXES + JOURNAL_SUFFIXES)}; allowed: sqlite:///FILE, "
        "postgresql+psycopg2://..., journal:///FILE or such a path"
    )


_SQLITE_URL = re.compile(r"^sqlite(?:\+\w+)?:///(?P<rest>.*)$", re.S)


def sqlite_file(url: Any) -> Path | None:
    """The file of an SQLite URL (``sqlite:///rel/x.db``, ``sqlite:////abs/x.db``, any
    ``+driver``, a ``file:`` URI path, a ``?query``), else ``None``: another database, or an
    in-memory SQLite (``:memory:``, ``mode=memory``). The one place SQLite URLs are parsed."""
    m = _SQLITE_URL.match(str(url))
    if m is None:
        return None
    path, _, query = m.group("rest").partition("?")
    path = path.removeprefix("file:")
    if path in ("", ":memory:") or "mode=memory" in query:
        return None
    return Path(path)


# what a storage argument may be: a URL, an SQLite or journal file path, or an opened storage
StorageSpec: TypeAlias = "str | Path | BaseStorage"


def open_storage(
    spec: StorageSpec,
    *,
    must_exist: bool = True,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    retry_stale: bool = False,
    read_only: bool = False,
) -> BaseStorage:
    """An Optuna storage for ``spec`` (see the module docstring).

    ``read_only``: a storage that cannot write, create or migrate (``_open_read_only``; a URL
    or a path only). This is the one function that opens storages.

    ``must_exist``: refuse to create a missing SQLite/journal file (readers). For RDB storages
    ``heartbeat_interval``/``grace_period`` (s) turn on Optuna's heartbeat, and ``retry_stale``
    re-queues the trial of a dead worker (``RetryHeartbeatStaleTrialCallback``). Raises
    ``StorageError`` naming the storage when it cannot be opened or reached.
    """
    import optuna

    if read_only:
        return _open_read_only(spec)
    if isinstance(spec, optuna.storages.BaseStorage):
        return spec
    if not isinstance(spec, (str, Path)):
        raise StorageError(f"storage must be a URL, a path or an Optuna storage, got {type(spec).__name__}")
    url = storage_url(spec)
    if url.startswith(JOURNAL_SCHEME):
        path = Path(url[len(JOURNAL_SCHEME) :])
        if must_exist and not path.is_file():
            raise StorageError(f"storage {url}: no such journal file")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    sqlite = sqlite_file(url)
    engine_kwargs: dict[str, Any] = {}
    if sqlite is not None:
        if must_exist and not sqlite.is_file():
            raise StorageError(f"storage {url}: no such SQLite file")
        sqlite.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith(("postgresql", "postgres")):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    kwargs: dict[str, Any] = {}
    if heartbeat_interval:
        kwargs["heartbeat_interval"] = int(heartbeat_interval)
        kwargs["grace_period"] = int(grace_period or 2 * heartbeat_interval)
        if retry_stale:
            from .stale import retry  # queued again with its parameters, without the failure reason

            kwargs["heartbeat_stale_trial_callback"] = retry
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except Exception as exc:  # sqlalchemy: OperationalError, ArgumentError, NoSuchModuleError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {redact(url)}: {type(exc).__name__}: {first}") from None


def _open_read_only(spec: StorageSpec) -> BaseStorage:
    """An Optuna storage for ``spec`` that cannot write, wrapped in Optuna's trial cache.

    - SQLite file (``sqlite:///FILE``, any driver, or a path): must exist and hold Optuna's
      tables; every connection is opened by SQLite in ``mode=ro``.
    - PostgreSQL (psycopg2 or psycopg): every session has ``default_transaction_read_only=on``.
    - journal file: must exist; appending raises.
    Tables are never created, versions never stamped or migrated (a write would fail anyway).
    Other databases are refused. Raises ``StorageError`` with a one-line reason."""
    import optuna

    if not isinstance(spec, (str, Path)):
        raise StorageError(f"a read-only storage is opened from a URL or a path, got {type(spec).__name__}")
    url = storage_url(spec)
    if url.startswith(JOURNAL_SCHEME):
        return _read_only_journal(Path(url[len(JOURNAL_SCHEME) :]))
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        raise StorageError(f"storage {redact(url)}: not a database URL") from None
    backend, _, driver = parsed.drivername.lower().partition("+")
    kwargs: dict[str, Any]
    if backend == "sqlite":
        path = sqlite_file(url)
        if path is None or not path.is_file():
            raise StorageError(f"storage {redact(url)}: no such SQLite file")
        if not _sqlite_has_optuna_tables(path):
            raise StorageError(f"storage {redact(url)}: the file holds no Optuna study tables (not an Optuna "
                               "storage, or no search has written to it yet)")
        kwargs = {"creator": lambda: _sqlite_read_only(path)}
        url = f"sqlite:///{path.resolve()}"  # what readers of the engine's URL see (the creator opens it)
    elif backend in ("postgresql", "postgres") and driver in ("", "psycopg2", "psycopg"):
        if not driver:  # SQLAlchemy's default driver is psycopg (3); psycopg2 where only that is installed
            driver = "psycopg" if importlib.util.find_spec("psycopg") is not None else "psycopg2"
        url = parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
        kwargs = {"connect_args": {"connect_timeout": 10, "options": "-c default_transaction_read_only=on"},
                  "pool_pre_ping": True}
    else:
        raise StorageError(f"storage {redact(url)}: read-only opening supports SQLite files, PostgreSQL "
                           "(postgresql+psycopg2:// or postgresql+psycopg://) and journal files")
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=True)
    except Exception as error:  # sqlalchemy errors: unreachable server, not an Optuna database, ...
        exc: BaseException = error
        while (exc.__cause__ or exc.__context__) is not None:  # the root cause says most
            exc = exc.__cause__ or exc.__context__ or exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "no such table" in first or "does not exist" in first:
            first = "it holds no Optuna tables (not an Optuna storage, or nothing was written yet)"
        raise StorageError(f"cannot open storage {redact(url)}: {first}") from None
    return compat.cached(rdb)  # Optuna's trial cache: a growing study is read incrementally


def _sqlite_read_only(path: Path) -> Any:
    """A DB-API connection to the SQLite file ``path`` that SQLite itself keeps read-only."""
    import sqlite3
    import urllib.parse

    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)


def _sqlite_has_optuna_tables(path: Path) -> bool:
    import sqlite3

    try:
        con = _sqlite_read_only(path)
        try:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='studies'").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return bool(rows)


def _read_only_journal(path: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path.is_file():
        raise StorageError(f"storage {JOURNAL_SCHEME}{path}: no such journal file")

    class ReadOnlyJournal(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            raise StorageError(f"storage {JOURNAL_SCHEME}{path} is open read-only")

    return JournalStorage(ReadOnlyJournal(str(path)))


def count_trials(storage: BaseStorage, study_id: int, states: tuple[TrialState, ...]) -> int:
    """How many trials of ``study_id`` are in one of ``states`` (Optuna ``TrialState``s), read
    from the storage itself (not from Optuna's trial cache): one ``SELECT COUNT(*)`` on an RDB
    storage instead of loading every trial, ``get_all_trials`` on other storages."""
    backend, models = compat.rdb_backend(storage), compat.rdb_models()
    if backend is not None and models is not None:
        import sqlalchemy as sa

        t = models.TrialModel.__table__
        query = sa.select(sa.func.count()).select_from(t).where(t.c.study_id == study_id, t.c.state.in_(states))
        with backend.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    return len(storage.get_all_trials(study_id, deepcopy=False, states=states))


def count_by_state(storage: BaseStorage, study_id: int) -> dict[str, int]:
    """``{state name: number of trials}`` of ``study_id``, read from the storage itself (one
    ``SELECT state, COUNT(*) ... GROUP BY state`` on an RDB storage)."""
    backend, models = compat.rdb_backend(storage), compat.rdb_models()
    if backend is not None and models is not None:
        import sqlalchemy as sa

        t = models.TrialModel.__table__
        query = sa.select(t.c.state, sa.func.count()).where(t.c.study_id == study_id).group_by(t.c.state)
        with backend.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {(s.name if hasattr(s, "name") else str(s)): int(n) for s, n in rows}
    out: dict[str, int] = {}
    for t in storage.get_all_trials(study_id, deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def close_storage(storage: Any) -> None:
    """Close the database connections of ``storage`` (an RDB storage, cached or not); a no-op
    on other storages. The storage opens new ones if it is used again."""
    backend = compat.rdb_backend(storage)
    if backend is not None:
        backend.engine.dispose()


def supports_heartbeat(storage: Any) -> bool:
    """True when ``storage`` is an RDB storage (heartbeats are possible)."""
    import optuna

    return isinstance(storage, optuna.storages.RDBStorage)


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

    def close(self) -> None:
        return None


class _FileLock:
    """An exclusive ``fcntl`` lock on ``path`` (a sibling ``.lock`` file of the study file).

    The file stays open between uses (cheap to take again); not re-entrant.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None

    def __enter__(self) -> None:
        import fcntl

        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "a+")
        fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class _PgLock:
    """A PostgreSQL session advisory lock keyed by the study name (one connection, reused)."""

    def __init__(self, url: str, name: str) -> None:
        import hashlib

        self.url = url
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big")
        self.conn: Any = None
        self.engine: Any = None

    def __enter__(self) -> None:
        import sqlalchemy

        if self.conn is None:
            try:  # the engine imports the URL's driver: a missing one fails here
                self.engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool,
                                                       connect_args={"connect_timeout": 10})
                self.conn = self.engine.connect()
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StorageError(f"cannot open storage {redact(self.url)}: {type(exc).__name__}: {first}") from None
        self.conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})

    def __exit__(self, *exc: Any) -> None:
        import sqlalchemy

        self.conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self.conn.commit()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.engine.dispose()
            self.conn = None


def study_lock(spec: Any, study_name: str) -> Any:
    """A cross-process lock for creating a study and filling its trial queue.

    SQLite and journal files: an ``fcntl`` lock on ``<file>.lock``; PostgreSQL: an advisory
    lock; other storages: no lock (create the study once before starting workers there).
    """
    if not isinstance(spec, (str, Path)):
        return _NullLock()
    url = storage_url(spec)
    if url.startswith(JOURNAL_SCHEME):
        return _FileLock(Path(url[len(JOURNAL_SCHEME) :] + ".lock"))
    sqlite = sqlite_file(url)
    if sqlite is not None:
        return _FileLock(sqlite.with_name(sqlite.name + ".lock"))
    if url.startswith(("postgresql", "postgres")):
        return _PgLock(url, study_name)
    return _NullLock()
