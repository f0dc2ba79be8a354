"""``bench/levers.py``: one ``ehvi`` option paired by seed against the defaults (the harness of
``docs/search_measurements.md``)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def levers(monkeypatch):
    """``bench/levers.py`` as a module (its change to ``sys.path`` undone after)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("bench_levers", ROOT / "bench" / "levers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _arm(values: dict[str, list[float]], seeds: list[int]) -> dict[str, dict[int, dict[str, float]]]:
    return {name: {s: {"100": v} for s, v in zip(seeds, vals)} for name, vals in values.items()}


def test_paired_differences_are_per_pair_and_seed(levers):
    seeds = [3, 4, 5]
    defaults = _arm({"a": [0.010, 0.020, 0.030], "b": [0.005, 0.004, 0.006]}, seeds)
    option = _arm({"a": [0.008, 0.021, 0.025], "b": [0.005, 0.001, 0.007]}, seeds)
    out = levers.paired(option, defaults, seeds)
    diffs = np.array([-0.002, 0.001, -0.005, 0.0, -0.003, 0.001])
    pooled = out["pooled"]["100"]
    assert pooled["mean_diff"] == pytest.approx(diffs.mean())
    assert pooled["runs"] == 6 and pooled["runs_better"] == 3
    assert pooled["ci95"][0] <= pooled["mean_diff"] <= pooled["ci95"][1]
    assert not pooled["worse"]
    assert out["pairs"]["a"]["100"] == {"gap_median_option": 0.021, "gap_median_defaults": 0.020}
    # a clearly better option: every run lower by about 0.01
    better = _arm({k: [x - 0.01 - 0.001 * i for i, x in enumerate(v)] for k, v in
                   {"a": [0.010, 0.020, 0.030], "b": [0.005, 0.004, 0.006]}.items()}, seeds)
    p = levers.paired(better, defaults, seeds)["pooled"]["100"]
    assert p["better"] and p["ci95"][1] < 0 and p["runs_better"] == 6


def test_stored_defaults_read_back_and_a_changed_gap_is_caught(levers, tmp_path):
    doc = {"search": {"seeds": [0, 1], "pairs": {"a": {"50": {"gaps": {"none": [0.3, 0.4], "synflow": [0, 0]}},
                                                       "100": {"gaps": {"none": [0.1, 0.2], "synflow": [0, 0]}}}}}}
    path = tmp_path / "zero_cost.json"
    path.write_text(json.dumps(doc))
    stored = levers.stored_defaults(path)
    assert stored == {"a": {0: {"50": 0.3, "100": 0.1}, 1: {"50": 0.4, "100": 0.2}}}
    assert levers.mismatches(stored, {"a": {0: {"50": 0.3, "100": 0.1}}}) == []
    bad = levers.mismatches(stored, {"a": {0: {"50": 0.3, "100": 0.1000001}}, "b": {0: {"50": 0.1}}})
    assert len(bad) == 2 and bad[0].startswith("a seed 0 at 100") and bad[1].startswith("b seed 0 at 50: stored None")


def test_bad_options_are_one_line_errors(levers):
    for argv, message in ((["x", "{not json"], "options must be a JSON object"),
                          (["x", "[1, 2]"], "options must be a JSON object, got '[1, 2]'"),
                          (["x", "{}", "--seeds", "3"], "--seeds must be A-B")):
        with pytest.raises(SystemExit, match=re.escape(message)):
            levers.main(argv)


@pytest.mark.slow
def test_the_defaults_against_themselves_differ_by_exactly_zero(levers, tmp_path):
    """A smoke run on the real table: the defaults given as the option rerun to the same gaps,
    so every paired difference is zero (the runs are deterministic per pair and seed)."""
    nb = levers.find_table()
    if nb is None:
        pytest.skip("nb201_dev.csv not found (set ARCHLAB_DATA or put ../shared/data beside the project)")
    out = tmp_path / "levers.json"
    out.write_text(json.dumps({"kept": {"options": {}}}))
    assert levers.main(["self", "{}", "--quick", "--procs", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["kept"] == {"options": {}}  # other levers' entries stay
    entry = doc["self"]
    assert entry["seeds"] == [0, 1] and entry["budget"] == 50 and entry["defaults"] == "rerun"
    assert sorted(entry["gaps"]) == ["cifar100/titan_rtx_1", "imagenet16/1080ti_1"]
    for per_seed in entry["gaps"].values():
        for arms in per_seed.values():
            assert arms["option"] == arms["defaults"] and 0 < arms["option"]["50"] < 0.2
    pooled = entry["pooled"]["50"]
    assert pooled["mean_diff"] == 0.0 and pooled["runs"] == 4 and pooled["runs_better"] == 0
