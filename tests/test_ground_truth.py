"""The ranking ground-truth table: built by archlab, read back, and the committed one is sane."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archlab.core.stats import seed_to_seed_tau
from archlab.supernets.ranking.ground_truth import (
    build_ground_truth,
    get_setup,
    load_ground_truth,
    uniform_archs,
)
from archlab.supernets.ranking.run import RankError

COMMITTED = Path(__file__).resolve().parents[1] / "data" / "ranking_gt_mlp_mnist.csv"


def test_build_and_load_a_small_table(tmp_path):
    out = tmp_path / "gt.csv"
    side = build_ground_truth("mlp_digits", out, tmp_path / "work", n_archs=4, steps=3, seeds=[0, 1])
    df = pd.read_csv(out)
    assert list(df.columns[:5]) == ["arch", "params", "macs", "width", "depth"]
    assert {"accuracy_s0", "accuracy_s1", "loss_s0", "loss_s1"} <= set(df.columns) and len(df) == 4
    setup = get_setup("mlp_digits")
    assert list(df["arch"]) == [a.key for a in uniform_archs(setup.space(), 4, setup.arch_seed)]
    want = seed_to_seed_tau(df[["accuracy_s0", "accuracy_s1"]].to_numpy()).estimate
    assert side["seed_to_seed_tau"]["accuracy"]["estimate"] == pytest.approx(want)
    assert side["standalone_steps"] == 3 and side["train"]["steps"] == 3 and side["code_version"]["source"]
    gt = load_ground_truth(out)
    assert gt.scores.shape == (4, 2) and np.allclose(gt.mean, df[["accuracy_s0", "accuracy_s1"]].mean(axis=1))
    lossy = load_ground_truth(out, metric="loss")
    assert np.allclose(lossy.scores, -df[["loss_s0", "loss_s1"]].to_numpy())  # oriented: higher is better
    # a second build reuses every cached standalone run
    again = build_ground_truth("mlp_digits", out, tmp_path / "work", n_archs=4, steps=3, seeds=[0, 1])
    assert again["seed_to_seed_tau"] == side["seed_to_seed_tau"]
    with pytest.raises(RankError, match="setup"):
        get_setup("nope")
    with pytest.raises(RankError, match="seeds"):
        build_ground_truth("mlp_digits", out, tmp_path / "work", n_archs=4, steps=3, seeds=[0])


@pytest.mark.skipif(not COMMITTED.is_file(), reason="committed ground truth not present")
def test_committed_table_has_100_archs_3_seeds_and_its_settings():
    df = pd.read_csv(COMMITTED)
    side = json.loads(COMMITTED.with_suffix(".json").read_text())
    assert len(df) == side["n_archs"] >= 100 and side["seeds"] == [0, 1, 2]
    assert df["arch"].is_unique
    for s in side["seeds"]:
        assert df[f"accuracy_s{s}"].between(0, 1).all()
    got = seed_to_seed_tau(df[[f"accuracy_s{s}" for s in side["seeds"]]].to_numpy()).estimate
    assert side["seed_to_seed_tau"]["accuracy"]["estimate"] == pytest.approx(got)
