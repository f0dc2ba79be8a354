"""Ranking statistics with intervals, proxies, and the refusal to compare mismatched supernets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.core.stats import tau_value
from archlab.spaces.library import mlp_space
from archlab.supernets.families.mlp import MLPNet
from archlab.supernets.ranking.run import RankError, sample_archs
from archlab.supernets.ranking.stats import (
    check_settings,
    count_macs,
    proxies,
    ranking_stats,
    training_record,
)
from archlab.supernets.ranking.zero_cost import synflow
from archlab.supernets.training.config import TrainConfig

SPACE = mlp_space("t", n_layer=(1, 3), width=(8, 16, 32))


def _rec(**changes):
    return training_record(TrainConfig(**changes).to_dict(), 100, {"source": "abc"})


def test_check_settings_refuses_different_training_settings_unless_allowed():
    same = {"a": _rec(), "b": _rec(seed=3, strategy="uniform")}  # seed and strategy are what is compared
    assert check_settings(same) == []
    bad = {"a": _rec(), "b": _rec(lr=5e-3)}
    with pytest.raises(RankError, match=r"b: train.lr = 0.005, a has 0.001.*--allow-mismatch"):
        check_settings(bad)
    assert check_settings(bad, allow_mismatch=True) == ["b: train.lr = 0.005, a has 0.001"]
    budget = {"a": _rec(), "b": {**_rec(), "budget": 50}}
    with pytest.raises(RankError, match="budget = 50"):
        check_settings(budget)
    unknown = {"a": _rec(), "b": {**_rec(), "budget": None}}
    assert check_settings(unknown) == ["b: training budget unknown for b"]
    # another code version is recorded and listed, not refused
    code = {"a": _rec(), "b": {**_rec(), "code": {"source": "def"}}}
    assert check_settings(code) == ["b: trained by code version 'def', a by 'abc'"]


def test_ranking_stats_on_hand_made_rankings():
    truth = np.arange(12, dtype=float)
    perfect = truth.copy()
    swapped = truth.copy()
    swapped[[0, 1, 5, 6]] = swapped[[1, 0, 6, 5]]          # two discordant pairs of 66
    seeds = np.stack([perfect, swapped])                     # a method with two supernet seeds
    st = ranking_stats(truth, {"a": perfect, "b": seeds}, proxies={"params": truth[::-1].copy()},
                       ceiling_scores=np.stack([truth, swapped], 1), reference="a", n_resamples=400)
    assert st["methods"]["a"]["kendall"]["estimate"] == pytest.approx(1.0)
    tau_sw = (66 - 2 * 2) / 66
    assert st["methods"]["b"]["kendall"]["estimate"] == pytest.approx((1.0 + tau_sw) / 2)
    assert st["methods"]["b"]["per_seed_kendall"] == pytest.approx([1.0, tau_sw])
    assert st["methods"]["b"]["minus_a"]["estimate"] == pytest.approx((tau_sw - 1.0) / 2)
    assert st["proxies"]["params"]["kendall"]["estimate"] == pytest.approx(-1.0)
    d = st["methods"]["a"]["minus_params"]
    assert d["estimate"] == pytest.approx(2.0) and d["excludes_zero"]
    assert st["ceiling"]["estimate"] == pytest.approx(tau_value(truth, swapped))
    assert st["methods"]["a"]["fraction_of_ceiling"] == pytest.approx(1.0 / tau_sw)
    lo, hi = st["methods"]["b"]["kendall"]["low"], st["methods"]["b"]["kendall"]["high"]
    assert lo <= st["methods"]["b"]["kendall"]["estimate"] <= hi
    with pytest.raises(RankError, match="reference"):
        ranking_stats(truth, {"a": perfect}, reference="zz", n_resamples=50)
    with pytest.raises(RankError, match="shape"):
        ranking_stats(truth, {"a": perfect[:5]}, n_resamples=50)


def test_proxies_count_params_and_macs_of_the_subnet():
    torch.manual_seed(0)
    net = MLPNet(SPACE, in_features=64, num_classes=10)
    arch = SPACE.validate({"n_layer": 2, "layers": [{"width": 8}, {"width": 32}]})
    p = proxies(net, arch)
    assert p["params"] == (64 * 8 + 8) + (8 * 32 + 32) + (32 * 10 + 10)
    assert p["macs"] == 64 * 8 + 8 * 32 + 32 * 10
    assert p["width"] == 20.0 and p["depth"] == 2.0
    assert p["synflow"] == pytest.approx(synflow(net.extract(arch), net.example_input(1)))
    assert count_macs(torch.nn.Conv2d(3, 4, 3, padding=1), torch.zeros(2, 3, 5, 5)) == 3 * 9 * 4 * 25


def test_archs_are_uniform_unless_extremes_are_asked_for():
    a = sample_archs(SPACE, 8, seed=1)
    rng = np.random.default_rng(1)
    expect = []
    while len(expect) < 8:
        x = SPACE.sample(rng)
        if x not in expect:
            expect.append(x)
    assert a == expect
    b = sample_archs(SPACE, 8, seed=1, extremes=True)
    assert b[:2] == [SPACE.largest(), SPACE.smallest()]
