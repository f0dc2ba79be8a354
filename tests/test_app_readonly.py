"""The dashboard's storages are read-only: ``open_storage(url, read_only=True)`` cannot create a
file, add tables to a file, stamp or migrate a schema, or write a trial; visitors cannot name a
storage; the read path (bulk reader and Optuna's API) still works on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest

pytest.importorskip("streamlit")
from test_app_access import _run  # AppTest of the app on a target, no token

from archlab.app.demo import make_demo_study
from archlab.search import rdb_read
from archlab.search.results import load_trials
from archlab.search.storage import StorageError, open_storage


def _refused(exc: BaseException, words: str) -> bool:
    """Whether ``exc`` or an exception it was raised from says ``words`` (Optuna wraps the
    database's own error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if words in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        con.close()


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ro") / "runs" / "demo" / "study.db"
    path.parent.mkdir(parents=True)
    make_demo_study(path, "demo", 60, seed=4)
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that records whether anything connected to it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        yield s


def _connected(s: socket.socket) -> bool:
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize("spec", ["sqlite:///{d}/new.db", "sqlite+pysqlite:///{d}/new.db", "{d}/new.db",
                                  "{d}/sub/new.sqlite", "journal:///{d}/new.log", "{d}/new.jsonl"])
def test_read_only_never_creates_a_file(tmp_path, spec):
    with pytest.raises(StorageError, match="no such"):
        open_storage(spec.format(d=tmp_path), read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_read_only_never_adds_tables_to_an_unrelated_sqlite_file(tmp_path):
    other = tmp_path / "accounts.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO accounts VALUES (1, 'ada')")
    con.commit()
    con.close()
    before = _digest(other)
    for spec in (f"sqlite:///{other}", f"sqlite+pysqlite:///{other}", str(other)):
        with pytest.raises(StorageError, match="no Optuna study tables"):
            open_storage(spec, read_only=True)
    assert _digest(other) == before and _tables(other) == ["accounts"]
    # the results API (the dashboard's door) opens read-only too: no tables, no file created
    from archlab.search.results import list_studies

    for read in (lambda: load_trials(str(other), "s"), lambda: list_studies(f"sqlite:///{other}")):
        with pytest.raises(StorageError, match="no Optuna study tables"):
            read()
    with pytest.raises(StorageError, match="no such"):
        load_trials(str(tmp_path / "missing.db"), "s")
    assert _digest(other) == before and sorted(p.name for p in tmp_path.iterdir()) == ["accounts.db"]
    # the plain (writing) opener would have added Optuna's tables: the case the flag guards against
    copy = tmp_path / "copy.db"
    copy.write_bytes(other.read_bytes())
    open_storage(str(copy)).engine.dispose()
    assert "studies" in _tables(copy)


def test_read_only_storage_refuses_writes_and_never_stamps_the_schema(tmp_path, study_db):
    db = tmp_path / "study.db"
    db.write_bytes(study_db.read_bytes())
    # Optuna stamps its version row (and alembic's) into a database that lacks them: not here
    con = sqlite3.connect(db)
    con.execute("DELETE FROM version_info")
    con.commit()
    con.close()
    before = _digest(db)
    with pytest.raises(StorageError, match="cannot open storage"):
        open_storage(db, read_only=True)
    assert _digest(db) == before
    # a complete study file: readable, but every write fails and the file stays as it was
    db.write_bytes(study_db.read_bytes())
    before = _digest(db)
    storage = open_storage(f"sqlite:///{db}", read_only=True)
    study = optuna.load_study(study_name="demo", storage=storage)
    assert len(study.trials) == 60
    with pytest.raises(Exception) as refused:
        storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "intruder")
    assert _refused(refused.value, "attempt to write a readonly database")
    with pytest.raises(Exception) as refused:
        study.enqueue_trial({"x": 1})
    assert _refused(refused.value, "attempt to write a readonly database")
    storage._backend.engine.dispose()
    assert _digest(db) == before
    assert not Path(f"{db}-journal").exists() and not Path(f"{db}-wal").exists()


def test_read_only_journal_reads_and_refuses_appends(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    log = tmp_path / "study.log"
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(log))), study_name="j")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    before = _digest(log)
    ro = open_storage(log, read_only=True)
    assert [t.number for t in optuna.load_study(study_name="j", storage=ro).trials] == list(range(5))
    with pytest.raises(StorageError, match="read-only"):
        ro.create_new_study([optuna.study.StudyDirection.MINIMIZE], "intruder")
    assert _digest(log) == before and sorted(p.name for p in tmp_path.iterdir()) == ["study.log"]


@pytest.mark.parametrize("scheme", ["mysql+pymysql", "postgresql+pg8000", "oracle"])
def test_read_only_refuses_other_databases_without_connecting(listener, scheme):
    port = listener.getsockname()[1]
    with pytest.raises(StorageError, match="read-only opening supports"):
        open_storage(f"{scheme}://u:secret@127.0.0.1:{port}/db", read_only=True)
    assert not _connected(listener)


def test_bulk_reader_and_optuna_read_a_read_only_sqlite_storage(monkeypatch, study_db):
    before = _digest(study_db)
    ro = open_storage(study_db, read_only=True)
    arrow = []

    class Spy(rdb_read._ArrowReader):
        def __call__(self, stmt):
            arrow.append(stmt)
            return super().__call__(stmt)

    monkeypatch.setattr(rdb_read, "_ArrowReader", Spy)
    fast = load_trials(ro, "demo")  # archlab.search.rdb_read's bulk read: ADBC's SQLite driver
    assert arrow, "the bulk read did not go through ADBC"
    pd.testing.assert_frame_equal(fast, load_trials(f"sqlite:///{study_db}", "demo"))
    monkeypatch.setattr(rdb_read, "_readers", lambda engine: iter([lambda: rdb_read._Reader(engine)]))  # DB-API
    pd.testing.assert_frame_equal(load_trials(ro, "demo"), fast)
    ref = optuna.load_study(study_name="demo", storage=f"sqlite:///{study_db}").trials
    got = optuna.load_study(study_name="demo", storage=ro).trials
    assert [(t.number, t.state, t.values, t.params) for t in got] == [(t.number, t.state, t.values, t.params)
                                                                       for t in ref]
    assert _digest(study_db) == before


@pytest.mark.postgres
def test_read_only_postgres_reads_and_cannot_write():
    url = os.environ.get("ARCHLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server (ARCHLAB_TEST_POSTGRES_URL unset: scripts/postgres.sh could not start one)")
    name = f"ro-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=url, study_name=name, directions=["minimize", "minimize"])
    try:
        for i in range(9):
            t = study.ask()
            t.suggest_categorical("op", ["a", "b"])
            t.set_constraint("c", i - 4.0)
            study.tell(t, [float(i), float(9 - i)])
        bare = url.replace("postgresql+psycopg2://", "postgresql://")  # the default driver picked as installed
        for spec in (url, bare):
            ro = open_storage(spec, read_only=True)
            pd.testing.assert_frame_equal(load_trials(ro, name), load_trials(url, name))
            assert [t.values for t in optuna.load_study(study_name=name, storage=ro).trials] == [
                [float(i), float(9 - i)] for i in range(9)]
            with pytest.raises(Exception) as refused:
                ro.create_new_study([optuna.study.StudyDirection.MINIMIZE], name + "-intruder")
            assert _refused(refused.value, "read-only transaction")
            with pytest.raises(Exception) as refused:
                optuna.load_study(study_name=name, storage=ro).enqueue_trial({"op": "a"})
            assert _refused(refused.value, "read-only transaction")
            ro._backend.engine.dispose()
        assert len(optuna.load_study(study_name=name, storage=url).trials) == 9
        assert name + "-intruder" not in optuna.get_all_study_names(url)
    finally:
        optuna.delete_study(study_name=name, storage=url)


def test_visitors_choose_only_among_the_servers_storages(monkeypatch, tmp_path, study_db, listener):
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        (runs / name).mkdir(parents=True)
        make_demo_study(runs / name / "study.db", name, 10, seed=1)
    port = listener.getsockname()[1]
    hostile = {"storage": f"postgresql+psycopg2://u@127.0.0.1:{port}/x", "custom_url": f"sqlite:///{tmp_path}/new.db",
               "url": f"mysql+pymysql://u@127.0.0.1:{port}/x", "source": str(study_db), "study": "demo"}
    at = _run(monkeypatch, runs, None, hostile)
    assert not at.text_input and not at.text_area  # nowhere to type a URL or a path
    assert at.selectbox(key="source").options == ["a", "b"]  # the server's runs/*/study.db, nothing else
    assert at.selectbox(key="study").value == "a"
    at.selectbox(key="source").set_value("b").run()
    assert at.selectbox(key="study").options == ["b"]
    for page in ("pareto", "detail", "live"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception
    assert not _connected(listener)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert sorted(p.name for p in (runs / "a").iterdir()) == ["study.db"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///runs/x/study.db", "runs/x/study.db"),
        ("sqlite:////abs/runs/study.db", "/abs/runs/study.db"),
        ("sqlite+pysqlite:///a.db?timeout=5", "a.db"),
        ("sqlite:///file:/abs/a.db?mode=ro&uri=true", "/abs/a.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:mem?mode=memory&uri=true", None),
        ("postgresql+psycopg2://u@h/db", None),
        ("journal:///x.log", None),
    ],
)
def test_sqlite_urls_are_parsed_in_one_place(url, expected):
    from archlab.search.storage import sqlite_file

    got = sqlite_file(url)
    assert (None if got is None else str(got)) == expected


def test_the_demo_writer_opens_storages_like_archlab_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = make_demo_study("rel/demo.db", "demo", 7, seed=1)  # a relative path, its folder missing
    assert url == f"sqlite:///{tmp_path / 'rel' / 'demo.db'}"
    assert len(load_trials(url, "demo")) == 7
    log = make_demo_study(tmp_path / "demo.log", "demo", 5, seed=1)  # a journal file too
    assert log == f"journal:///{tmp_path / 'demo.log'}"
    assert len(optuna.load_study(study_name="demo", storage=open_storage(log)).trials) == 5
    with pytest.raises(StorageError, match="allowed: sqlite:///FILE"):
        make_demo_study(tmp_path / "demo.txt", "demo", 3)
    assert not (tmp_path / "demo.txt").exists()
