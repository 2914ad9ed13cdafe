"""The statistics of experiments, from sufficient statistics (sums per variant), so that results for
millions of units cost a few array operations. scipy and statsmodels do the tests; what they do not
have (the delta method for ratios and for relative lift, CUPED's adjustment, the Gaussian mixture
confidence sequence) is written out here with its reference. Defaults and their reasons:
docs/experiments.md.

scipy.stats and statsmodels are imported by the functions that test: the experiments' admin and
API import this module in every web process, and the two cost about 60 MB of memory per worker
that a process serving recommendations never uses (tests/cdp/test_web_imports.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SRM_THRESHOLD = 0.001  # p-value below which a sample-ratio mismatch is flagged
SEQUENTIAL_TUNING = 5000  # N*: the sample size at which the confidence sequence is tightest


@dataclass
class Summary:
    """Per-variant sums of one metric: y (numerator per unit), x (denominator per unit; None: a
    per-unit mean), z (pre-exposure covariate for CUPED; None: no CUPED)."""

    n: int
    y: float
    yy: float
    x: float | None = None
    xx: float | None = None
    xy: float | None = None
    z: float | None = None
    zz: float | None = None
    yz: float | None = None

    def mean(self) -> float:
        if self.x is not None:
            return self.y / self.x if self.x else 0.0
        return self.y / self.n if self.n else 0.0

    def var_y(self) -> float:
        return _var(self.n, self.y, self.yy)


def _var(n: int, s: float, ss: float) -> float:
    return max((ss - s * s / n) / (n - 1), 0.0) if n > 1 else 0.0


def _cov(n: int, a: float, b: float, ab: float) -> float:
    return (ab - a * b / n) / (n - 1) if n > 1 else 0.0


def cuped_theta(summaries: list[Summary]) -> float | None:
    """theta = cov(y, z) / var(z), pooled over the variants (so that it is the same adjustment for all)."""
    if any(s.z is None for s in summaries):
        return None
    n = sum(s.n for s in summaries)
    y, z = sum(s.y for s in summaries), sum(s.z for s in summaries)
    var_z = _var(n, z, sum(s.zz for s in summaries))
    if var_z <= 0:
        return None
    return _cov(n, y, z, sum(s.yz for s in summaries)) / var_z


def mean_and_var(s: Summary, *, theta: float | None = None, z_pooled: float = 0.0) -> tuple[float, float]:
    """The metric's estimate and its variance (of the estimate, not per unit).

    Ratio metrics (x given): the delta method, Var(ybar/xbar) ≈ (var_y - 2R sd_xy + R^2 var_x) / (n xbar^2).
    CUPED (theta given): ybar - theta(zbar - zbar_pooled), with variance (var_y - 2thetasd_yz + theta^2var_z) / n."""
    n = s.n
    if n < 2:
        return s.mean(), float("inf")
    if s.x is not None:
        xbar = s.x / n
        ratio = s.mean()
        var = _var(n, s.y, s.yy) - 2 * ratio * _cov(n, s.x, s.y, s.xy) + ratio**2 * _var(n, s.x, s.xx)
        return ratio, max(var, 0.0) / (n * xbar * xbar) if xbar else float("inf")
    ybar = s.y / n
    var = _var(n, s.y, s.yy)
    if theta is not None and s.z is not None:
        ybar -= theta * (s.z / n - z_pooled)
        var = var - 2 * theta * _cov(n, s.y, s.z, s.yz) + theta**2 * _var(n, s.z, s.zz)
    return ybar, max(var, 0.0) / n


def confidence_sequence_halfwidth(*, se: float, n: int, alpha: float, tuning: int = SEQUENTIAL_TUNING) -> float:
    """Half-width of the asymptotic Gaussian-mixture confidence sequence (Waudby-Smith, Arnold, Wu,
    Howard, Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences", 2023; as
    in GrowthBook): with sd = se*sqrtn and rho2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N*,
    sd * sqrt(2(nrho2 + 1) / (n^2rho2) * ln(sqrt(nrho2 + 1) / alpha))."""
    if n < 2 or not math.isfinite(se):
        return float("inf")
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    sigma = se * math.sqrt(n)
    return sigma * math.sqrt(2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))


def sequential_p_value(*, estimate: float, se: float, n: int, alpha: float, tuning: int = SEQUENTIAL_TUNING) -> float:
    """The smallest level at which the confidence sequence (tuned for ``alpha``) excludes 0."""
    if n < 2 or not se or not math.isfinite(se):
        return 1.0
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    sigma = se * math.sqrt(n)
    exponent = (estimate * n / sigma) ** 2 * rho2 / (2 * (n * rho2 + 1))
    return float(min(1.0, math.sqrt(n * rho2 + 1) * math.exp(-exponent)))


@dataclass
class Comparison:
    control_mean: float
    variant_mean: float
    lift: float  # relative: (variant - control) / control
    lift_se: float
    low: float  # interval of the relative lift (sequential or fixed, per ``sequential``)
    high: float
    p_value: float
    fixed_p_value: float
    fixed_low: float
    fixed_high: float
    chance_to_win: float
    sequential: bool


def compare(
    control: Summary,
    variant: Summary,
    *,
    alpha: float = 0.05,
    sequential: bool = True,
    theta: float | None = None,
    z_pooled: float = 0.0,
    proportion: bool = False,
    tuning: int = SEQUENTIAL_TUNING,
) -> Comparison:
    """Variant vs control on one metric: relative lift with its delta-method standard error
    (Var(mu_t/mu_c) ≈ var_t/mu^2_c + mu^2_t var_c/mu⁴_c), the fixed-horizon p-value (Welch's t-test, or the
    two-proportion z-test for a share of units), the always-valid interval and p-value, and the
    Bayesian chance to beat control (a flat prior on the lift: Phi(lift / se))."""
    from scipy import stats
    from statsmodels.stats.proportion import proportions_ztest

    mc, vc = mean_and_var(control, theta=theta, z_pooled=z_pooled)
    mt, vt = mean_and_var(variant, theta=theta, z_pooled=z_pooled)
    if not mc or not math.isfinite(vc) or not math.isfinite(vt):
        nan = float("nan")
        return Comparison(mc, mt, nan, nan, nan, nan, 1.0, 1.0, nan, nan, 0.5, sequential)
    lift = (mt - mc) / mc
    lift_se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    if proportion and control.x is None and theta is None:
        _, fixed_p = proportions_ztest([variant.y, control.y], [variant.n, control.n])
    elif control.x is None:
        _, fixed_p = stats.ttest_ind_from_stats(
            mt, math.sqrt(vt * variant.n), variant.n, mc, math.sqrt(vc * control.n), control.n, equal_var=False
        )
    else:  # ratio metric: a z-test on the delta-method variance
        diff_se = math.sqrt(vt + vc)
        fixed_p = 2 * stats.norm.sf(abs(mt - mc) / diff_se) if diff_se else 1.0
    fixed_p = float(fixed_p) if np.isfinite(fixed_p) else 1.0
    z = stats.norm.ppf(1 - alpha / 2)
    n = control.n + variant.n
    half = confidence_sequence_halfwidth(se=lift_se, n=n, alpha=alpha, tuning=tuning)
    seq_p = sequential_p_value(estimate=lift, se=lift_se, n=n, alpha=alpha, tuning=tuning)
    chance = float(stats.norm.cdf(lift / lift_se)) if lift_se > 0 else (1.0 if lift > 0 else 0.0)
    fixed_low, fixed_high = lift - z * lift_se, lift + z * lift_se
    low, high = (lift - half, lift + half) if sequential else (fixed_low, fixed_high)
    return Comparison(
        control_mean=mc,
        variant_mean=mt,
        lift=lift,
        lift_se=lift_se,
        low=low,
        high=high,
        p_value=seq_p if sequential else fixed_p,
        fixed_p_value=fixed_p,
        fixed_low=fixed_low,
        fixed_high=fixed_high,
        chance_to_win=chance,
        sequential=sequential,
    )


def holm(p_values: list[float], alpha: float = 0.05) -> list[float]:
    """Holm-Bonferroni adjusted p-values across every variant x metric (statsmodels)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, alpha=alpha, method="holm")[1]]


def srm(observed: list[int], weights: list[float]) -> dict:
    """Sample-ratio mismatch: Pearson's chi-squared of units per variant against the configured
    weights (scipy); flagged below p = 0.001."""
    from scipy import stats

    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return {"p_value": 1.0, "mismatch": False, "observed": observed, "expected": [0.0] * len(observed)}
    w = np.asarray(weights, dtype=float)
    expected = total * w / w.sum()
    p = float(stats.chisquare(observed, expected).pvalue)
    return {
        "p_value": p,
        "mismatch": p < SRM_THRESHOLD,
        "observed": [int(o) for o in observed],
        "expected": [round(float(e), 1) for e in expected],
    }


def power_plan(
    *,
    baseline_mean: float,
    baseline_sd: float,
    mde: float | None = None,
    units: int | None = None,
    power: float = 0.8,
    alpha: float = 0.05,
    variants: int = 2,
    units_per_day: float | None = None,
) -> dict:
    """Power calculator for a fixed-horizon two-sided test of a relative lift (statsmodels'
    NormalIndPower, equal split): give ``mde`` for the units needed per variant (and the days, with
    ``units_per_day`` across the experiment), or ``units`` (per variant) for the minimum detectable
    effect. The sequential interval needs more units for the same power (see docs/experiments.md)."""
    from statsmodels.stats.power import NormalIndPower

    analysis = NormalIndPower()
    out: dict = {"alpha": alpha, "power": power, "baseline_mean": baseline_mean, "baseline_sd": baseline_sd}
    if mde is not None:
        effect = mde * baseline_mean / baseline_sd
        n = float(analysis.solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0))
        if not (math.isfinite(effect) and effect and math.isfinite(n) and n * variants < 1e15):
            raise ValueError("These figures give no usable plan (the effect is zero, infinite or needs no units).")
        out.update(mde=mde, units_per_variant=math.ceil(n))
        if units_per_day:
            out["days"] = math.ceil(n * variants / units_per_day)
    elif units is not None:
        effect = float(analysis.solve_power(nobs1=units, alpha=alpha, power=power, ratio=1.0))
        mde_found = effect * baseline_sd / baseline_mean if baseline_mean else math.inf
        if not math.isfinite(mde_found):
            raise ValueError("These figures give no usable minimum detectable effect (check the baseline).")
        out.update(units_per_variant=units, mde=mde_found)
    else:
        raise ValueError("give mde or units")
    return out


def achieved_power(*, baseline_mean: float, baseline_sd: float, lift: float, units: int, alpha: float = 0.05) -> float:
    """The power of the fixed-horizon test for a true relative ``lift`` with ``units`` per variant."""
    from statsmodels.stats.power import NormalIndPower

    effect = lift * baseline_mean / baseline_sd
    return float(NormalIndPower().power(effect_size=effect, nobs1=units, alpha=alpha, ratio=1.0))
