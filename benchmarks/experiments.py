"""Experiments and bandits, proved by simulation (issue 14, item 6), through the product's own code
(recommendations.experiments.statistics and .bandits).

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments.py [--quick] [--only NAME ...]

Parts (each prints one JSON line; figures go to benchmarks/README.md):
- ``aa``: A/A tests with a look every simulated day: the share of runs that ever declare a
  difference, for the default (sequential, always-valid) interval and for the fixed-horizon
  Welch t-test peeked the same way;
- ``power``: a true 5 % lift at the calculator's sample size for 80 % power: observed power;
- ``srm``: 50.5/49.5 and 50/50 splits: the share flagged as sample-ratio mismatch;
- ``cuped``: variance of the lift estimate with and without CUPED at pre-period correlation 0.6;
- ``bandit``: Thompson sampling (the product's batched, floored, burnt-in version) against uniform
  allocation and epsilon-greedy (0.1) on a simulator built from Online Retail: arms are cdp's
  recommenders, true click rates per segment are their hit rates on held-out purchases;
- ``ope``: doubly robust (and IPS, SNIPS) estimates of a candidate policy from Thompson sampling's
  logs: how often the 95 % interval covers the true value;
- ``scale``: results for 10 million exposures (unit-level sums to the results table).
The small versions of these run as tests (tests/recommendations/test_experiments_simulations.py).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATASET = REPO.parent / "shared" / "datasets" / "online_retail" / "online_retail.csv.gz"

from recommendations.experiments import bandits, statistics  # noqa: E402
from recommendations.experiments.statistics import Summary  # noqa: E402


def _binary_summary(n: int, successes: float) -> Summary:
    return Summary(n=int(n), y=float(successes), yy=float(successes))


# --- A/A with daily peeking ----------------------------------------------------------------------


def aa_peeking(
    *, runs: int = 2000, days: int = 14, units_per_day: int = 1000, rate: float = 0.1, seed: int = 1
) -> dict:
    """Each run: two identical arms; every day each gains units_per_day/2 units converting at ``rate``;
    at every day's look the sequential and the fixed-horizon (Welch) p-values are checked at 0.05."""
    rng = np.random.default_rng(seed)
    half = units_per_day // 2
    seq_hits = fixed_hits = 0
    fixed_final = 0
    for _ in range(runs):
        a = np.cumsum(rng.binomial(half, rate, size=days))
        b = np.cumsum(rng.binomial(half, rate, size=days))
        seq_any = fixed_any = False
        for d in range(days):
            n = half * (d + 1)
            cmp = statistics.compare(_binary_summary(n, a[d]), _binary_summary(n, b[d]), alpha=0.05, sequential=True)
            seq_any |= cmp.p_value < 0.05
            fixed_any |= cmp.fixed_p_value < 0.05
            if d == days - 1:
                fixed_final += cmp.fixed_p_value < 0.05
        seq_hits += seq_any
        fixed_hits += fixed_any
    return {
        "runs": runs,
        "looks": days,
        "units": half * days * 2,
        "sequential_false_positive_rate": seq_hits / runs,
        "fixed_peeked_false_positive_rate": fixed_hits / runs,
        "fixed_single_look_false_positive_rate": fixed_final / runs,
    }


# --- power ---------------------------------------------------------------------------------------


def power_check(*, runs: int = 2000, rate: float = 0.1, lift: float = 0.05, seed: int = 2) -> dict:
    sd = math.sqrt(rate * (1 - rate))
    plan = statistics.power_plan(baseline_mean=rate, baseline_sd=sd, mde=lift, power=0.8, alpha=0.05)
    n = plan["units_per_variant"]
    rng = np.random.default_rng(seed)
    a = rng.binomial(n, rate, size=runs)
    b = rng.binomial(n, rate * (1 + lift), size=runs)
    hits = seq_hits = 0
    for x, y in zip(a, b, strict=True):
        cmp = statistics.compare(_binary_summary(n, x), _binary_summary(n, y), alpha=0.05, sequential=True)
        hits += cmp.fixed_p_value < 0.05 and cmp.lift > 0
        seq_hits += cmp.p_value < 0.05 and cmp.lift > 0
    return {
        "runs": runs,
        "units_per_variant": n,
        "calculator_power": 0.8,
        "observed_power_fixed": hits / runs,
        "observed_power_sequential_single_look": seq_hits / runs,
    }


# --- SRM -----------------------------------------------------------------------------------------


def srm_check(*, runs: int = 2000, units: int = 200_000, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    out = {"runs": runs}
    # "at 200,000 units": read both ways, 200,000 in all and 200,000 per variant
    for label, total in (("total", units), ("per_variant", 2 * units)):
        for name, share in (("skewed_50.5_49.5", 0.505), ("true_50_50", 0.5)):
            first = rng.binomial(total, share, size=runs)
            flagged = sum(statistics.srm([int(f), int(total - f)], [50, 50])["mismatch"] for f in first)
            out[f"flagged_{name}_{units}_{label}"] = flagged / runs
        # the arithmetic: a 0.5-point skew of n units is (0.005 n) / (0.5 sqrt(n)) = 0.01 sqrt(n) standard
        # deviations of the binomial assignment; any test at p < 0.001 (|z| > 3.29) catches it with this power
        shift = 0.01 * total**0.5
        z = float(scipy_stats.norm.isf(statistics.SRM_THRESHOLD / 2))
        out[f"skew_in_sigma_{label}"] = shift
        out[f"power_any_test_{label}"] = float(scipy_stats.norm.sf(z - shift) + scipy_stats.norm.cdf(-z - shift))
    # units in all at which a 0.5-point skew is caught in 99 % of runs at p < 0.001
    z = float(scipy_stats.norm.isf(statistics.SRM_THRESHOLD / 2))
    out["units_in_all_for_99_percent"] = round(((z + float(scipy_stats.norm.isf(0.01))) / 0.01) ** 2)
    return out


# --- CUPED ---------------------------------------------------------------------------------------


def cuped_check(*, runs: int = 500, units: int = 4000, rho: float = 0.6, seed: int = 4) -> dict:
    """Per unit: pre-period x and metric y with correlation ``rho``; two arms of units/2, no effect.
    Variance (over runs) of the lift estimate with and without CUPED."""
    rng = np.random.default_rng(seed)
    plain, adjusted = [], []
    half = units // 2
    for _ in range(runs):
        arms = []
        for _arm in range(2):
            x = rng.normal(size=half)
            y = 10 + rho * x + math.sqrt(1 - rho * rho) * rng.normal(size=half)
            arms.append(
                Summary(
                    n=half,
                    y=float(y.sum()),
                    yy=float((y * y).sum()),
                    z=float(x.sum()),
                    zz=float((x * x).sum()),
                    yz=float((x * y).sum()),
                )
            )
        theta = statistics.cuped_theta(arms)
        z_pooled = (arms[0].z + arms[1].z) / units
        plain.append(statistics.compare(arms[0], arms[1], sequential=False).lift)
        adjusted.append(statistics.compare(arms[0], arms[1], sequential=False, theta=theta, z_pooled=z_pooled).lift)
    v0, v1 = float(np.var(plain)), float(np.var(adjusted))
    return {"runs": runs, "units": units, "rho": rho, "variance_reduction": 1 - v1 / v0}


# --- bandit simulator from Online Retail ---------------------------------------------------------

ARMS = ["popularity", "buy_again", "item_item", "als"]


def retail_click_rates(path: Path = DATASET, *, max_rows: int | None = None) -> dict:
    """True click rates per segment and arm: each of cdp's recommenders (trained on all but the last
    30 days) is scored by hit rate@10 on the held-out purchases of the customers of each segment
    (country UK / elsewhere x one earlier order / repeat buyer)."""
    import pandas as pd

    from recommendations.engine.bundle import train_bundle
    from recommendations.engine.data import Interactions
    from recommendations.engine.evaluate import holdout_split, rank_users

    frame = pd.read_csv(path, nrows=max_rows, dtype={"InvoiceNo": str, "StockCode": str})
    frame = frame.dropna(subset=["CustomerID", "StockCode"])
    frame = frame[(frame.Quantity > 0) & ~frame.InvoiceNo.str.startswith("C") & frame.StockCode.str.contains(r"\d")]
    ts = (pd.to_datetime(frame.InvoiceDate) - pd.Timestamp("1970-01-01")).dt.total_seconds()
    customers = frame.CustomerID.astype(int).astype(str)
    data = Interactions.from_rows(
        zip(customers, frame.StockCode, ["purchase"] * len(frame), frame.Quantity, ts, frame.InvoiceNo, strict=True)
    )
    train, truth = holdout_split(data, test_days=30)
    bundle = train_bundle(
        data=train, catalog=None, params={"primary": "popularity", "recommenders": ARMS}, now=float(train.ts.max())
    )
    country = frame.groupby(customers).Country.first()
    cutoff = truth.cutoff
    orders_before = frame[ts < cutoff].groupby(customers[ts < cutoff]).InvoiceNo.nunique()
    segment = {}
    for u in truth.users:
        where = "uk" if country.get(u) == "United Kingdom" else "intl"
        segment[u] = f"{where}-{'repeat' if orders_before.get(u, 0) > 1 else 'once'}"
    hits = {
        arm: [
            len(set(top) & rel) > 0
            for top, rel in zip(rank_users(bundle, truth.users, 10, arm), truth.relevant, strict=True)
        ]
        for arm in ARMS
    }
    segments = sorted(set(segment.values()))
    rates = {}
    weights = {}
    for s in segments:
        idx = [i for i, u in enumerate(truth.users) if segment[u] == s]
        weights[s] = len(idx) / len(truth.users)
        rates[s] = {arm: float(np.mean([hits[arm][i] for i in idx])) for arm in ARMS}
    return {"segments": segments, "weights": weights, "rates": rates, "users": len(truth.users)}


def simulate_bandit(
    world: dict,
    *,
    policy: str,
    rounds: int = 100_000,
    batch: int = 1000,
    burn_in: int = 100,
    floor: float = 0.01,
    epsilon: float = 0.1,
    seed: int = 5,
    log: bool = False,
):
    """Cumulative regret (expected, against the best arm of each context) of one policy. Thompson
    sampling uses the product's ``thompson_shares`` on the counts at each batch boundary (as the beat
    update does); epsilon-greedy updates every round (a stronger baseline than batched)."""
    rng = np.random.default_rng(seed)
    segments = world["segments"]
    k = len(ARMS)
    true = np.array([[world["rates"][s][a] for a in ARMS] for s in segments])
    best = true.max(axis=1)
    ctx = rng.choice(len(segments), size=rounds, p=[world["weights"][s] for s in segments])
    served = np.zeros((len(segments), k))
    clicks = np.zeros((len(segments), k))
    shares = np.full((len(segments), k), 1.0 / k)
    regret = 0.0
    logs = []
    for start in range(0, rounds, batch):
        if policy == "thompson":
            for c in range(len(segments)):
                shares[c] = bandits.thompson_shares(served[c], clicks[c], burn_in=burn_in, floor=floor, rng=rng)
        for t in range(start, min(start + batch, rounds)):
            c = ctx[t]
            if policy == "uniform":
                p = np.full(k, 1.0 / k)
            elif policy == "epsilon":
                means = np.divide(clicks[c], served[c], out=np.full(k, np.inf), where=served[c] > 0)
                p = np.full(k, epsilon / k)
                p[int(np.argmax(means))] += 1 - epsilon
            else:
                p = shares[c]
            a = int(rng.choice(k, p=p))
            r = float(rng.random() < true[c, a])
            served[c, a] += 1
            clicks[c, a] += r
            regret += best[c] - true[c, a]
            if log:
                logs.append((c, a, p[a], r))
    return (regret, logs) if log else regret


def ope_coverage(world: dict, *, runs: int = 200, rounds: int = 10_000, seed: int = 6) -> dict:
    """From Thompson sampling's logs, estimate the value of the uniform-random policy and of "always
    the arm that is best overall": share of runs whose 95 % interval covers the true value."""
    segments = world["segments"]
    true = np.array([[world["rates"][s][a] for a in ARMS] for s in segments])
    w = np.array([world["weights"][s] for s in segments])
    overall = int(np.argmax(w @ true))
    targets = {
        "uniform": (np.full(len(ARMS), 1.0 / len(ARMS)), float(w @ true.mean(axis=1))),
        f"always {ARMS[overall]}": (np.eye(len(ARMS))[overall], float(w @ true[:, overall])),
    }
    covered = {name: {"ips": 0, "snips": 0, "dr": 0} for name in targets}
    for run in range(runs):
        _, logs = simulate_bandit(world, policy="thompson", rounds=rounds, batch=500, seed=seed + run, log=True)
        c = np.array([x[0] for x in logs])
        a = np.array([x[1] for x in logs])
        p = np.array([x[2] for x in logs])
        r = np.array([x[3] for x in logs])
        # reward model: per context x arm observed mean (the product's DR uses the same)
        q = np.zeros((len(segments), len(ARMS)))
        for ci in range(len(segments)):
            for ai in range(len(ARMS)):
                m = (c == ci) & (a == ai)
                q[ci, ai] = r[m].mean() if m.any() else r[c == ci].mean()
        for name, (pi, value) in targets.items():
            target_p = pi[a]
            q_target = q[c] @ pi
            for est, e in (
                ("ips", bandits.ips(reward=r, logged_p=p, target_p=target_p)),
                ("snips", bandits.snips(reward=r, logged_p=p, target_p=target_p)),
                (
                    "dr",
                    bandits.doubly_robust(reward=r, logged_p=p, target_p=target_p, q_logged=q[c, a], q_target=q_target),
                ),
            ):
                covered[name][est] += e.low <= value <= e.high
    return {
        "runs": runs,
        "rounds": rounds,
        "coverage": {n: {k: v / runs for k, v in d.items()} for n, d in covered.items()},
    }


# --- scale ---------------------------------------------------------------------------------------


def results_at_scale(*, units: int = 10_000_000, seed: int = 7) -> dict:
    """10 million exposed units in two variants: unit-level metrics (exposures, clicks, orders,
    revenue, pre-period revenue) to per-variant sums (numpy) and the results table (the product's
    statistics for every metric, Holm, SRM). The SQL part is measured separately (see README)."""
    from recommendations.experiments.selectors import COLUMNS, METRICS, PAIRS, summary_of

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    variant = rng.integers(0, 2, size=units)
    e = rng.poisson(3, size=units) + 1.0
    c = rng.binomial(e.astype(int), 0.05).astype(float)
    o = rng.poisson(0.1 * (1 + 0.03 * variant)).astype(float)
    pr = rng.gamma(1.0, 20.0, size=units) * (rng.random(units) < 0.2)
    r = o * rng.gamma(2.0, 25.0, size=units) + 0.3 * pr
    v = (o > 0).astype(float)
    po = (pr > 0).astype(float)
    cols = {"e": e, "c": c, "o": o, "r": r, "v": v, "po": po, "pr": pr}
    generated = time.perf_counter()
    rows = []
    for arm in (0, 1):
        m = variant == arm
        row = {"n": int(m.sum())}
        for name in COLUMNS:
            x = cols[name][m]
            row[name], row[name + name] = float(x.sum()), float((x * x).sum())
        for a, b in PAIRS:
            row[a + b] = float((cols[a][m] * cols[b][m]).sum())
        rows.append(row)
    summed = time.perf_counter()
    p_values = []
    for metric in METRICS:
        s = [summary_of(row, metric) for row in rows]
        theta = statistics.cuped_theta(s)
        z = (s[0].z + s[1].z) / units if theta is not None else 0.0
        cmp = statistics.compare(s[0], s[1], theta=theta, z_pooled=z, proportion=METRICS[metric][3])
        p_values.append(cmp.p_value)
    statistics.holm(p_values)
    statistics.srm([rows[0]["n"], rows[1]["n"]], [50, 50])
    done = time.perf_counter()
    return {
        "units": units,
        "generate_seconds": round(generated - started, 2),
        "sums_seconds": round(summed - generated, 2),
        "statistics_seconds": round(done - summed, 4),
    }


# --- the in-process cost of strategy_for ---------------------------------------------------------


def strategy_cost(*, calls: int = 200_000, experiments: int = 5, seed: int = 8) -> dict:
    """Microseconds per call of the decision serving makes on every request, with ``experiments``
    running experiments on the placement (in separate layers, targeting on) and a bandit on another
    placement, against the baseline in the same run: the same call with nothing running. The
    configuration is built in memory as ``assignment.load`` builds it (the once-a-second version
    check against Redis is outside this loop; it is one GET a second per process)."""
    import uuid as _uuid

    from recommendations.experiments import assignment
    from recommendations.experiments.strategy import Strategy

    rng = np.random.default_rng(seed)
    config = assignment.Config()
    for n in range(experiments):
        alloc = assignment.reallocate([], {"control": 50, "treatment": 50})
        exp = assignment.LiveExperiment(
            key=f"e{n}",
            salt=f"salt{n}",
            layer=f"layer{n}",
            layer_start=0,
            layer_end=2000 * (n + 1),
            segments=frozenset({"vip", "new"}) if n % 2 else frozenset(),
            buckets=assignment.expand(alloc),
            variants={
                k: assignment.LiveVariant(k, Strategy(experiment=f"e{n}", variant=k)) for k in ("control", "treatment")
            },
            overrides={},
        )
        config.by_placement.setdefault("home", []).append(exp)
    arms = {k: Strategy(variant=k) for k in ("a", "b", "c")}
    config.policies["cart"] = assignment.LivePolicy(
        key="p",
        arms=arms,
        context_segments=("vip",),
        shares={},
        uniform=assignment._cumulative([(k, 1 / 3) for k in arms]),
    )
    empty = assignment.Config()
    people = [str(_uuid.UUID(int=int(x))) for x in rng.integers(0, 2**63, size=calls)]
    segments = ["new", "loyal"]

    def run(cfg, placement):
        started = time.perf_counter()
        for p in people:
            assignment.choose(
                profile_id=p,
                placement=placement,
                device="mobile",
                segments=segments,
                personalisation_consent=True,
                config=cfg,
            )
        return (time.perf_counter() - started) / calls * 1e6

    baseline = run(empty, "home")
    with_experiments = run(config, "home")
    with_bandit = run(config, "cart")
    # the per-process cache check serving pays too (a monotonic clock read while the config is fresh)
    assignment.live_config.config, assignment.live_config.checked_at = config, time.monotonic() + 3600
    started = time.perf_counter()
    for _ in range(calls):
        assignment.live_config.get()
    cache_us = (time.perf_counter() - started) / calls * 1e6
    assignment.live_config.invalidate()
    return {
        "calls": calls,
        "baseline_nothing_running_us": round(baseline, 2),
        f"{experiments}_experiments_us": round(with_experiments, 2),
        "bandit_us": round(with_bandit, 2),
        "cache_check_us": round(cache_us, 3),
        "ratio_experiments_to_baseline": round(with_experiments / baseline, 1),
    }


PARTS = {
    "aa": lambda q: aa_peeking(runs=300 if q else 2000),
    "power": lambda q: power_check(runs=500 if q else 2000),
    "srm": lambda q: srm_check(runs=500 if q else 2000),
    "cuped": lambda q: cuped_check(runs=200 if q else 500),
    "scale": lambda q: results_at_scale(units=1_000_000 if q else 10_000_000),
    "strategy": lambda q: strategy_cost(calls=20_000 if q else 200_000),
}


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    only = argv[argv.index("--only") + 1 :] if "--only" in argv else [*PARTS, "bandit", "ope"]
    print(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count()}))
    for name in only:
        if name in PARTS:
            started = time.perf_counter()
            out = PARTS[name](quick)
            print(json.dumps({"part": name, **out, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    if "bandit" in only or "ope" in only:
        started = time.perf_counter()
        world = retail_click_rates()
        print(json.dumps({"part": "world", **world, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
        if "bandit" in only:
            rounds = 20_000 if quick else 100_000
            out = {}
            for policy in ("thompson", "uniform", "epsilon"):
                regrets = [simulate_bandit(world, policy=policy, rounds=rounds, seed=s) for s in range(3)]
                out[policy] = float(np.mean(regrets))
            out["thompson_over_uniform"] = out["thompson"] / out["uniform"]
            out["thompson_over_epsilon"] = out["thompson"] / out["epsilon"]
            print(json.dumps({"part": "bandit", "rounds": rounds, "runs": 3, **out}), flush=True)
        if "ope" in only:
            print(json.dumps({"part": "ope", **ope_coverage(world, runs=50 if quick else 200)}), flush=True)
    print(json.dumps({"load_average_end": os.getloadavg()}))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import django

    django.setup()
    main(sys.argv[1:])
