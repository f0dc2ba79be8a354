"""archlab.core.stats against direct computation on hand-made rankings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from archlab.core.stats import (
    Interval,
    StatsError,
    bootstrap_ci,
    kendall_tau,
    median_ci,
    paired_difference,
    seed_to_seed_tau,
    spearman,
    tau_value,
)


def _naive_tau(x, y) -> float:
    """Kendall tau-a (no ties) by counting pairs."""
    c = d = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
        c += s > 0
        d += s < 0
    return (c - d) / (len(x) * (len(x) - 1) / 2)


def _naive_bootstrap(stat, n, reps, seed, level=0.95):
    rng = np.random.default_rng(seed)
    vals = np.array([stat(rng.integers(0, n, n)) for _ in range(reps)])
    vals = vals[np.isfinite(vals)]
    a = (1 - level) / 2
    return np.quantile(vals, a), np.quantile(vals, 1 - a)


def test_point_estimates_match_hand_counts():
    x = [1, 2, 3, 4, 5]
    y = [1, 2, 3, 5, 4]  # one discordant pair of 10
    assert kendall_tau(x, y, n_resamples=200).estimate == pytest.approx(0.8)
    # 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 120
    assert spearman(x, y, n_resamples=200).estimate == pytest.approx(0.9)
    rng = np.random.default_rng(3)
    a, b = rng.permutation(12).astype(float), rng.permutation(12).astype(float)
    assert tau_value(a, b) == pytest.approx(_naive_tau(a, b))


def test_bootstrap_mean_interval_matches_exact_enumeration():
    data = np.array([0.0, 1.0, 3.0, 4.0, 10.0])
    n = len(data)
    # exact bootstrap distribution: all n^n resamples, equally likely
    means = np.array([data[list(ix)].mean() for ix in itertools.product(range(n), repeat=n)])
    lo, hi = np.quantile(means, 0.025), np.quantile(means, 0.975)
    ci = bootstrap_ci(data, n_resamples=20000, seed=1)
    assert ci.estimate == pytest.approx(data.mean())
    assert ci.low == pytest.approx(lo, abs=0.15)
    assert ci.high == pytest.approx(hi, abs=0.15)
    assert ci.method == "percentile" and ci.n == 5 and ci.level == 0.95


def test_kendall_interval_matches_naive_paired_bootstrap():
    truth = np.arange(20, dtype=float)
    noise = np.array([3, -2, 4, 0, -5, 1, 2, -3, 0, 4, -1, 2, -4, 3, 0, 1, -2, 5, -3, 1], float)
    noisy = truth + noise + 0.01 * truth  # no ties: tau-b equals the pair count
    ci = kendall_tau(truth, noisy, n_resamples=4000, seed=0)
    lo, hi = _naive_bootstrap(lambda i: tau_value(truth[i], noisy[i]), 20, 4000, seed=7)
    assert ci.estimate == pytest.approx(_naive_tau(truth, noisy))
    assert ci.low == pytest.approx(lo, abs=0.04)
    assert ci.high == pytest.approx(hi, abs=0.04)
    assert ci.low < ci.estimate < ci.high


def test_paired_difference_of_taus_on_same_architectures():
    truth = np.arange(30, dtype=float)
    rng = np.random.default_rng(0)
    good = truth + rng.normal(0, 2, 30)      # ranks nearly right
    bad = truth + rng.normal(0, 25, 30)      # ranks nearly at random
    d = paired_difference(good, bad, reference=truth, n_resamples=3000, seed=0)
    assert d.estimate == pytest.approx(tau_value(truth, good) - tau_value(truth, bad))
    lo, hi = _naive_bootstrap(lambda i: tau_value(truth[i], good[i]) - tau_value(truth[i], bad[i]), 30, 3000, seed=5)
    assert d.low == pytest.approx(lo, abs=0.05) and d.high == pytest.approx(hi, abs=0.05)
    assert d.excludes_zero and d.low > 0
    # the same scores on both sides: the difference is exactly 0 and does not exclude 0
    same = paired_difference(good, good, reference=truth, n_resamples=500)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero
    # Spearman by name, and the order of a and b flips the sign
    rev = paired_difference(bad, good, reference=truth, statistic="spearman", n_resamples=500)
    assert rev.high < 0 and rev.excludes_zero


def test_paired_difference_of_paired_samples_cancels_shared_noise():
    # a per-seed figure of two methods: seed effects are large and shared, A is 0.05 better
    seed_effect = np.array([0.1, -0.3, 0.25, -0.1, 0.4, -0.2, 0.05, 0.3])
    a = 0.6 + seed_effect + 0.05 + np.array([0.01, -0.01, 0.0, 0.01, -0.01, 0.0, 0.01, -0.01])
    b = 0.6 + seed_effect
    d = paired_difference(a, b, n_resamples=3000)
    assert d.estimate == pytest.approx(np.mean(a - b))
    assert d.excludes_zero and 0.035 < d.low < d.high < 0.065
    # unpaired (independent resampling) would not separate them
    unpaired_a = bootstrap_ci(a, n_resamples=2000)
    assert unpaired_a.low < b.mean()


def test_median_ci_order_statistics():
    three = median_ci([0.7, 0.9, 0.8])
    assert (three.estimate, three.low, three.high) == (0.8, 0.7, 0.9)
    assert three.coverage == pytest.approx(0.75)   # 1 - 2 / 2^3: three seeds cannot reach 95 %
    ten = median_ci(list(range(10)))
    # j = 2: 1 - 2 * P(Binom(10, 1/2) <= 1) = 1 - 2 * 11 / 1024
    assert (ten.low, ten.high) == (1.0, 8.0)
    assert ten.coverage == pytest.approx(1 - 22 / 1024)
    assert ten.estimate == 4.5


def test_seed_to_seed_tau_is_mean_pairwise_tau():
    base = np.arange(10, dtype=float)
    s1, s2, s3 = base, base[::-1].copy(), base.copy()
    s3[[0, 1]] = s3[[1, 0]]
    m = np.stack([s1, s2, s3], axis=1)
    want = np.mean([tau_value(s1, s2), tau_value(s1, s3), tau_value(s2, s3)])
    ci = seed_to_seed_tau(m, n_resamples=300)
    assert ci.estimate == pytest.approx(want)
    assert ci.low <= ci.estimate <= ci.high
    assert seed_to_seed_tau(np.stack([base, base], 1), n_resamples=100).estimate == pytest.approx(1.0)


def test_errors_name_the_field():
    with pytest.raises(StatsError, match="level"):
        kendall_tau([1, 2, 3], [1, 2, 3], level=95)
    with pytest.raises(StatsError, match="method"):
        bootstrap_ci([1, 2, 3], method="studentized-ish")
    with pytest.raises(StatsError, match="differ in length"):
        paired_difference([1, 2, 3], [1, 2], reference=[1, 2, 3])
    with pytest.raises(StatsError, match="NaN"):
        spearman([1, 2, float("nan")], [1, 2, 3])
    with pytest.raises(StatsError, match="correlation"):
        paired_difference([1, 2, 3], [3, 2, 1], reference=[1, 2, 3], statistic="pearsonish")


def test_bca_and_interval_dict():
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    ci = bootstrap_ci(x, method="bca", n_resamples=1000)
    assert ci.method == "bca" and ci.low < x.mean() < ci.high
    d = Interval(0.1, -0.2, 0.3, 0.95, 5, "percentile", 0.95).to_dict()
    assert d["excludes_zero"] is False and d["estimate"] == 0.1
