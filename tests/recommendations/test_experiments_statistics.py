"""Statistics of experiments against scipy/statsmodels on raw data and against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recommendations.experiments import statistics
from recommendations.experiments.statistics import Summary


def summary(y, x=None, z=None) -> Summary:
    y = np.asarray(y, dtype=float)
    s = Summary(n=len(y), y=float(y.sum()), yy=float((y * y).sum()))
    if x is not None:
        x = np.asarray(x, dtype=float)
        s.x, s.xx, s.xy = float(x.sum()), float((x * x).sum()), float((x * y).sum())
    if z is not None:
        z = np.asarray(z, dtype=float)
        s.z, s.zz, s.yz = float(z.sum()), float((z * z).sum()), float((z * y).sum())
    return s


def test_welch_p_value_from_sums_equals_scipy_on_raw_data():
    rng = np.random.default_rng(0)
    a, b = rng.exponential(10, 800), rng.exponential(11, 1200)
    cmp = statistics.compare(summary(a), summary(b), sequential=False)
    assert cmp.fixed_p_value == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9)
    assert cmp.lift == pytest.approx(b.mean() / a.mean() - 1)
    assert cmp.p_value == cmp.fixed_p_value


def test_two_proportion_test_is_statsmodels():
    from statsmodels.stats.proportion import proportions_ztest

    cmp = statistics.compare(
        Summary(n=1000, y=100, yy=100), Summary(n=1000, y=130, yy=130), sequential=False, proportion=True
    )
    assert cmp.fixed_p_value == pytest.approx(proportions_ztest([130, 100], [1000, 1000])[1])


def test_delta_method_variance_of_a_ratio_matches_simulation():
    rng = np.random.default_rng(1)
    estimates, variances = [], []
    for _ in range(400):
        e = rng.poisson(4, 500) + 1
        c = rng.binomial(e, 0.1)
        s = summary(c, x=e)
        mean, var = statistics.mean_and_var(s)
        estimates.append(mean)
        variances.append(var)
    assert np.mean(variances) == pytest.approx(np.var(estimates), rel=0.15)


def test_cuped_cuts_variance_by_rho_squared():
    rng = np.random.default_rng(2)
    x = rng.normal(size=20_000)
    y = 5 + 0.6 * x + 0.8 * rng.normal(size=20_000)
    s = summary(y, z=x)
    theta = statistics.cuped_theta([s])
    assert theta == pytest.approx(0.6, abs=0.02)
    _, plain = statistics.mean_and_var(s)
    _, adjusted = statistics.mean_and_var(s, theta=theta, z_pooled=s.z / s.n)
    assert 1 - adjusted / plain == pytest.approx(0.36, abs=0.03)


def test_confidence_sequence_is_wider_than_fixed_and_its_p_value_agrees_with_it():
    a, b = Summary(n=5000, y=500, yy=500), Summary(n=5000, y=580, yy=580)
    seq = statistics.compare(a, b, sequential=True)
    fixed = statistics.compare(a, b, sequential=False)
    assert seq.high - seq.low > fixed.high - fixed.low
    assert (seq.low > 0) == (seq.p_value < 0.05)
    # at the p-value's level the sequence just touches 0 (its definition)
    half = statistics.confidence_sequence_halfwidth(se=seq.lift_se, n=10_000, alpha=0.05)
    assert seq.lift - half == pytest.approx(seq.low)


def test_chance_to_beat_control_is_half_without_difference():
    a = Summary(n=1000, y=100, yy=100)
    assert statistics.compare(a, a).chance_to_win == pytest.approx(0.5)
    assert statistics.compare(a, Summary(n=1000, y=140, yy=140)).chance_to_win > 0.95


def test_holm_and_srm():
    assert statistics.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert statistics.srm([50_500, 49_500], [50, 50])["p_value"] == pytest.approx(
        stats.chisquare([50_500, 49_500]).pvalue
    )
    assert statistics.srm([101_000, 99_000], [50, 50])["mismatch"] is True
    assert statistics.srm([100_100, 99_900], [50, 50])["mismatch"] is False


def test_power_calculator_round_trip():
    sd = math.sqrt(0.1 * 0.9)
    plan = statistics.power_plan(baseline_mean=0.1, baseline_sd=sd, mde=0.05, units_per_day=10_000)
    assert statistics.achieved_power(
        baseline_mean=0.1, baseline_sd=sd, lift=0.05, units=plan["units_per_variant"]
    ) == pytest.approx(0.8, abs=0.001)
    assert plan["days"] == math.ceil(2 * plan["units_per_variant"] / 10_000)
    back = statistics.power_plan(baseline_mean=0.1, baseline_sd=sd, units=plan["units_per_variant"])
    assert back["mde"] == pytest.approx(0.05, rel=0.01)
