"""Small, fast versions of benchmarks/experiments.py's simulations (the full figures are in
benchmarks/README.md). Seeds are fixed; the bounds are the issue's, with a margin for the fewer runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import experiments as sim


def test_sequential_stays_valid_under_daily_peeking_while_peeked_t_test_does_not():
    out = sim.aa_peeking(runs=200, days=10, units_per_day=600)
    assert out["sequential_false_positive_rate"] <= 0.05
    assert out["fixed_peeked_false_positive_rate"] >= 0.10


def test_power_matches_the_calculator():
    out = sim.power_check(runs=400)
    assert abs(out["observed_power_fixed"] - 0.8) <= 0.05


def test_srm_flags_a_skewed_split_and_rarely_a_true_one():
    out = sim.srm_check(runs=300)
    assert out["flagged_skewed_50.5_49.5_200000_per_variant"] >= 0.99
    assert out["flagged_true_50_50_200000_per_variant"] <= 0.01


def test_cuped_cuts_variance_by_at_least_30_percent():
    assert sim.cuped_check(runs=150, units=2000)["variance_reduction"] >= 0.30


WORLD = {
    "segments": ["a", "b"],
    "weights": {"a": 0.6, "b": 0.4},
    "rates": {
        "a": {"popularity": 0.10, "buy_again": 0.20, "item_item": 0.12, "als": 0.08},
        "b": {"popularity": 0.15, "buy_again": 0.05, "item_item": 0.09, "als": 0.11},
    },
}


def test_thompson_sampling_beats_uniform_and_epsilon_greedy():
    thompson = sim.simulate_bandit(WORLD, policy="thompson", rounds=20_000, seed=1)
    uniform = sim.simulate_bandit(WORLD, policy="uniform", rounds=20_000, seed=1)
    epsilon = sim.simulate_bandit(WORLD, policy="epsilon", rounds=20_000, seed=1)
    assert thompson <= 0.5 * uniform
    assert thompson < epsilon


@pytest.mark.parametrize("estimator", ["dr", "snips"])
def test_off_policy_intervals_cover_the_true_value(estimator):
    out = sim.ope_coverage(WORLD, runs=30, rounds=4000)
    for name, coverage in out["coverage"].items():
        assert coverage[estimator] >= 0.8, (name, coverage)
