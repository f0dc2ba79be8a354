"""archlab.search.optuna_compat: the version gate, forcing the fallback, and the same search,
trials and tables on the fast paths (Optuna internals) and on Optuna's public API."""

from __future__ import annotations

import logging
import math
import sys
from datetime import datetime, timedelta

import optuna
import pandas as pd
import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from archlab.search import SearchError, load_trials, optuna_compat, run_search
from archlab.search.storage import count_by_state, open_storage
from archlab.spaces.library import mlp_space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = mlp_space(n_layer=(1, 2), width=(16, 32, 64))  # 12 architectures: repeats are certain


def width(a) -> float:
    return float(sum(layer["width"] for layer in a["layers"]))


def error(a) -> float:
    """NaN for one architecture family: those trials fail with a reason and the run goes on."""
    if a["n_layer"] == 2 and a["layers"][0]["width"] == 16:
        return math.nan
    return 1.0 / width(a) + 0.01 * a["n_layer"]


@pytest.fixture
def gate(monkeypatch):
    """The version gate re-evaluated on a patched ``optuna.__version__``, warning state reset."""
    optuna_compat.use_fallback(None)
    monkeypatch.delenv(optuna_compat.ENV_FALLBACK, raising=False)
    monkeypatch.setattr(optuna_compat, "_warned", False)

    def at(version: str) -> bool:
        monkeypatch.setattr(optuna, "__version__", version)
        optuna_compat.version_supported.cache_clear()
        return optuna_compat.fast()

    yield at
    optuna_compat.version_supported.cache_clear()


def test_the_pin_in_pyproject_is_the_tested_range():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [Requirement(d) for d in deps if Requirement(d).name == "optuna"]
    assert len(pins) == 1
    assert pins[0].specifier == SpecifierSet(",".join(optuna_compat.SUPPORTED))
    assert optuna_compat.version_supported()  # the installed Optuna is the tested one


@pytest.mark.parametrize(("version", "fast"), [("5.0.0", True), ("5.0.7", True), ("5.1.0", False),
                                               ("4.5.0", False), ("6.0.0", False)])
def test_the_version_gate(gate, version, fast):
    assert gate(version) is fast


def test_outside_the_range_one_warning_says_the_slow_path_is_used(gate, caplog):
    with caplog.at_level(logging.INFO, logger=optuna_compat.__name__):
        assert gate("5.1.0") is False
        assert optuna_compat.fast() is False
    records = [r for r in caplog.records if r.name == optuna_compat.__name__]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "5.1.0 is outside the tested range >=5.0,<5.1" in records[0].getMessage()


def test_the_fallback_is_forced_by_the_environment_or_a_function(gate, monkeypatch):
    assert gate("5.0.0") is True
    monkeypatch.setenv(optuna_compat.ENV_FALLBACK, "1")
    assert optuna_compat.fast() is False
    monkeypatch.setenv(optuna_compat.ENV_FALLBACK, "0")
    assert optuna_compat.fast() is True
    with optuna_compat.fallback():
        assert optuna_compat.fast() is False
    assert optuna_compat.fast() is True
    optuna_compat.use_fallback(False)  # asking for the fast path outside the range is not honoured
    try:
        assert gate("5.1.0") is False
    finally:
        optuna_compat.use_fallback(None)


def _search(url: str, name: str, fallback: bool) -> list[tuple]:
    with optuna_compat.fallback(fallback):
        run_search(SPACE, {"error": ("min", error), "size": ("min", width)}, n_trials=12, storage=url,
                   study_name=name, seed=3, sampler="tpe", constraints={"size": 200}, heartbeat_interval=1)
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    return [(t.number, t.state.name, t.params, t.values, t.user_attrs, t.constraints) for t in trials]


def test_fast_path_and_fallback_give_the_same_search_and_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    fast = _search(url, "fast", fallback=False)
    slow = _search(url, "slow", fallback=True)
    assert fast == slow
    states = [t[1] for t in fast]
    assert states.count("COMPLETE") == 12 and "FAIL" in states  # NaN trials failed, with their reason
    assert all("returned nan" in t[4]["fail_reason"] for t in fast if t[1] == "FAIL")
    assert any("reused_from" in t[4] for t in fast)
    # the bulk SQL reader (fast) and Optuna's get_all_trials (fallback) give the same frame
    bulk = load_trials(url, "fast")
    with optuna_compat.fallback():
        api = load_trials(url, "fast")
        ro = open_storage(url, read_only=True)
        sid = ro.get_study_id_from_name("fast")
        counts_api = count_by_state(ro, sid)
    pd.testing.assert_frame_equal(bulk, api)
    assert bulk.attrs == api.attrs
    counts = count_by_state(open_storage(url, read_only=True), sid)
    assert counts == counts_api == {"COMPLETE": 12, "FAIL": states.count("FAIL")}


def test_fallback_stale_rule_reads_archlabs_own_beats(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with optuna_compat.fallback():
        storage = open_storage(url, must_exist=False, heartbeat_interval=1, grace_period=5)
        study = optuna_compat.create_study(storage=storage, study_name="b")
        ids = [storage.create_new_trial(optuna_compat.study_id(study)) for _ in range(3)]
        now = datetime.now().timestamp()
        hooked = optuna_compat.storage_of(study)
        optuna_compat.record_heartbeat(hooked, ids[1])  # beats now
        storage.set_trial_system_attr(ids[2], optuna_compat.BEAT_KEY, now - 60)  # beat long ago
        # just started: nothing is stale yet, whatever the beats say
        assert optuna_compat.beatless_trial_ids(study, 5.0, now=now) == ([], [])
        later = (datetime.now() + timedelta(seconds=30)).timestamp()
        old, never = optuna_compat.beatless_trial_ids(study, 5.0, now=later)
        assert (old, never) == ([ids[1], ids[2]], [ids[0]])
        assert optuna_compat.beatless_trial_ids(study, 60.0, now=later) == ([], [])
        storage.engine.dispose()


def test_fallback_storage_forwards_and_takes_hooks():
    with optuna_compat.fallback():
        inner = optuna.storages.InMemoryStorage()
        study = optuna_compat.create_study(storage=inner, study_name="h")
        hooked = optuna_compat.storage_of(study)
        assert hooked is not inner and hooked.inner is inner
        created = []

        def create(sid, template_trial=None):
            created.append(sid)
            return inner.create_new_trial(sid, template_trial)

        optuna_compat.install_hooks(study, create_new_trial=create)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        assert created == [optuna_compat.study_id(study)] * 3
        assert len(inner.get_all_trials(optuna_compat.study_id(study))) == 3
        assert optuna_compat.rdb_models() is None and optuna_compat.rdb_backend(hooked) is None
    with pytest.raises(SearchError, match=r"opened by archlab\.search\.optuna_compat"), optuna_compat.fallback():
        optuna_compat.storage_of(optuna.create_study())
