"""The bulk SQL read of an RDB study gives exactly what Optuna's API gives."""

import math

import numpy as np
import optuna
import pandas as pd
import pytest
import sqlalchemy

from archlab.search import load_trials, results
from archlab.search.rdb_read import read_tables, tables_from_trials


def _study(url: str) -> optuna.Study:
    study = optuna.create_study(storage=url, study_name="s", directions=["minimize", "maximize"])
    study.set_user_attr("archlab", {"objectives": [{"name": "err", "direction": "min"}, {"name": "acc", "direction": "max"}],
                                    "constraints": {"latency_ms": 2.0}})
    for i in range(40):
        t = study.ask()
        depth = t.suggest_int("depth", 1, 4)
        op = t.suggest_categorical("op", ["conv3", "conv5", "skip"])
        lr = t.suggest_float("lr", 1e-4, 1e-1, log=True)
        if depth > 2:
            t.suggest_int(f"layers.{depth - 1}.width", 16, 64, step=16)
        t.set_user_attr("arch", f'{{"depth":{depth},"op":"{op}"}}')
        if i % 3:
            t.set_user_attr("metrics", {"latency_ms": depth * 0.7, "params": 10 * depth})
        t.set_constraint("latency_ms", depth * 0.7 - 2.0)
        if i % 11 == 5:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        elif i % 13 == 7:
            continue  # left RUNNING
        else:
            study.tell(t, [math.inf if i == 9 else lr * depth, -math.inf if i == 10 else 1.0 / depth])
    return study


def test_bulk_read_equals_optuna_api(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    study = _study(url)
    fast = load_trials(url, "s")
    monkeypatch.setattr(results, "read_tables", lambda *a, **k: None)  # force Optuna's API
    slow = load_trials(url, "s")
    pd.testing.assert_frame_equal(fast, slow)
    assert fast.attrs == slow.attrs
    # and the tables carry Optuna's own values, trial by trial
    sql = read_tables(study._storage, study._study_id)
    api = tables_from_trials(study.get_trials())
    number = dict(zip(sql.trials["trial_id"], sql.trials["number"]))
    for part in ("values", "params", "user", "constraints"):
        a, b = getattr(sql, part), getattr(api, part)
        got = sorted((number[r[0]], *r[1:]) for r in a.itertuples(index=False, name=None))
        want = sorted(b.itertuples(index=False, name=None))
        assert got == want, part
    assert set(fast["state"]) == {"COMPLETE", "FAIL", "RUNNING"}
    assert fast.loc[9, "err"] == math.inf and fast.loc[10, "acc"] == -math.inf


def test_a_parameter_with_several_distributions(tmp_path, monkeypatch):
    """Optuna lets a name change its distribution between trials: each row then uses its own."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    study = optuna.create_study(storage=url, study_name="d")
    for i in range(12):
        t = study.ask()
        k = t.suggest_int("k", 1, 3 if i % 2 else 9, step=2 if i % 2 else 1)
        study.tell(t, float(i) + k)
    fast = load_trials(url, "d")
    monkeypatch.setattr(results, "read_tables", lambda *a, **k: None)
    slow = load_trials(url, "d")
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["arch.k"].tolist() == [t.params["k"] for t in study.trials]


def test_non_rdb_storages_use_optuna_api():
    storage = optuna.storages.InMemoryStorage()
    sid = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "m")
    assert read_tables(storage, sid) is None


@pytest.mark.postgres
def test_bulk_read_on_postgres(monkeypatch):
    import os
    import uuid

    url = os.environ.get("ARCHLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server (ARCHLAB_TEST_POSTGRES_URL unset: scripts/postgres.sh could not start one)")
    name = f"s-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=url, study_name=name, directions=["minimize"])
    for i in range(12):
        t = study.ask()
        t.suggest_categorical("op", ["a", "b"])
        t.set_constraint("c", i - 5.0)
        study.tell(t, float(i))
    fast = load_trials(url, name)
    monkeypatch.setattr(results, "read_tables", lambda *a, **k: None)
    pd.testing.assert_frame_equal(fast, load_trials(url, name))
    optuna.delete_study(study_name=name, storage=url)


def test_incremental_reader_equals_a_full_read(tmp_path):
    """A live view: each read gives exactly ``load_trials``, while asking only for new or
    still-unfinished trials (a RUNNING trial that finishes later is read again)."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    study = optuna.create_study(storage=url, study_name="live", directions=["minimize", "minimize"])
    other = optuna.create_study(storage=url, study_name="other")  # interleaved trial ids
    reader = results.TrialsReader(url, "live")
    open_trials = []
    kept = 0
    for step in range(5):
        for i in range(6):
            t = study.ask()
            x = t.suggest_int("x", 0, 9)
            t.set_user_attr("metrics", {"m": float(x)})
            t.set_constraint("c", x - 4.0)
            if i == 2:
                open_trials.append(t)  # stays RUNNING for now
            else:
                study.tell(t, [float(x), float(9 - x)] if i != 4 else None,
                           state=optuna.trial.TrialState.FAIL if i == 4 else None)
            other.optimize(lambda tr: tr.suggest_float("y", 0, 1), n_trials=1)
        if step >= 2:  # finish the oldest open trial
            t = open_trials.pop(0)
            study.tell(t, [1.0, 2.0])
        got = reader.read()
        want = load_trials(url, "live")
        pd.testing.assert_frame_equal(got, want)
        assert got.attrs == want.attrs
        # asked for: the trials from the first one unfinished at the previous read onwards
        assert reader.last_read_trials == len(want) - kept, step
        kept = min((t.number for t in open_trials), default=len(want))
    assert 0 < reader.last_read_trials < len(want)


def _db_api_only(monkeypatch):
    from archlab.search import rdb_read

    monkeypatch.setattr(rdb_read, "_readers", lambda engine: iter([lambda: rdb_read._Reader(engine)]))


def test_arrow_and_db_api_readers_give_the_same_tables(tmp_path, monkeypatch):
    """An SQLite file is read through ADBC (Arrow columns); the DB-API path gives the same."""
    from archlab.search import rdb_read

    url = f"sqlite:///{tmp_path / 'a.db'}"
    study = _study(url)
    used = []
    real = rdb_read._ArrowReader

    class Spy(real):
        def __call__(self, stmt):
            out = super().__call__(stmt)
            used.append(len(out))  # a result came back from ADBC
            return out

    monkeypatch.setattr(rdb_read, "_ArrowReader", Spy)
    arrow = read_tables(study._storage, study._study_id)
    assert used, "the SQLite file was not read through ADBC"
    _db_api_only(monkeypatch)
    rows = read_tables(study._storage, study._study_id)
    for part in ("trials", "values", "params", "user", "constraints"):
        pd.testing.assert_frame_equal(getattr(arrow, part), getattr(rows, part), obj=part)


def test_column_types_are_read_from_every_row(tmp_path, monkeypatch):
    """More than one Arrow batch (1,024 rows) of NULL objective values (Optuna stores an
    infinite value as NULL plus its type) before the first finite one: still floats."""
    from optuna.trial import TrialState, create_trial

    url = f"sqlite:///{tmp_path / 'inf.db'}"
    study = optuna.create_study(storage=url, study_name="inf")
    dist = optuna.distributions.FloatDistribution(0, 1)
    study.add_trials([create_trial(state=TrialState.COMPLETE, value=math.inf if i < 1100 else i / 7,
                                   params={"x": 0.5}, distributions={"x": dist}) for i in range(1105)])
    from optuna.storages._rdb import models

    from archlab.search import rdb_read

    engine = study._storage._backend.engine if hasattr(study._storage, "_backend") else study._storage.engine
    read = rdb_read._ArrowReader(rdb_read._sqlite_file(engine), engine.dialect)
    try:  # straight from the driver (read_tables would fall back to DB-API on an error)
        got = read(sqlalchemy.select(models.TrialValueModel.__table__.c.value)).col(0, float)
    finally:
        read.close()
    assert np.isnan(got[:1100]).all() and got[1100:].tolist() == [i / 7 for i in range(1100, 1105)]
    df = load_trials(url, "inf")
    assert (df["value"][:1100] == math.inf).all()
    assert df["value"][1100:].tolist() == [i / 7 for i in range(1100, 1105)]
    _db_api_only(monkeypatch)
    pd.testing.assert_frame_equal(df, load_trials(url, "inf"))


def test_a_failing_arrow_reader_falls_back_to_db_api(tmp_path, monkeypatch):
    from archlab.search import rdb_read

    url = f"sqlite:///{tmp_path / 'f.db'}"
    _study(url)
    want = load_trials(url, "s")

    class Broken(rdb_read._ArrowReader):
        def __call__(self, stmt):
            raise OSError("[SQLite] Type mismatch in column 1")

    monkeypatch.setattr(rdb_read, "_ArrowReader", Broken)
    pd.testing.assert_frame_equal(load_trials(url, "s"), want)
