"""Thompson sampling across serving strategies per context (segment x placement x device), and
off-policy evaluation of candidate policies from the logged propensities.

The policy is updated in batches (a Celery beat task, every few minutes): for each context the
Beta(1 + clicks, 1 + misses) posterior of every arm's click rate is sampled ``DRAWS`` times and each
arm's share is the probability that it is the best (what Thompson sampling would draw, as a
probability, so that serving draws from it in-process and logs the exact propensity). Until every arm
of a context has ``burn_in`` answers the context is served uniformly; each arm keeps at least
``floor`` of its context's traffic (exploration never stops, and the propensities stay bounded away
from 0, which off-policy evaluation needs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from scipy import stats

DRAWS = 20_000


def thompson_shares(
    served: np.ndarray, clicks: np.ndarray, *, burn_in: int, floor: float, rng: np.random.Generator
) -> np.ndarray:
    """The share of each arm: P(arm is best) under Beta posteriors, mixed with the floor."""
    k = len(served)
    if k == 0:
        return np.array([])
    if (served < burn_in).any():
        return np.full(k, 1.0 / k)
    samples = rng.beta(1.0 + clicks[:, None], 1.0 + (served - clicks)[:, None], size=(k, DRAWS))
    p = np.bincount(samples.argmax(axis=0), minlength=k) / DRAWS
    return floor + (1.0 - k * floor) * p


# --- off-policy evaluation -----------------------------------------------------------------------


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    n: int


def _interval(terms: np.ndarray, value: float | None = None) -> Estimate:
    n = len(terms)
    mean = float(terms.mean()) if value is None else value
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    z = stats.norm.ppf(0.975)
    return Estimate(mean, mean - z * se, mean + z * se, n)


def ips(*, reward: np.ndarray, logged_p: np.ndarray, target_p: np.ndarray) -> Estimate:
    """Inverse propensity scoring: mean of r x pi(a|x) / mu(a|x)."""
    return _interval(reward * target_p / logged_p)


def snips(*, reward: np.ndarray, logged_p: np.ndarray, target_p: np.ndarray) -> Estimate:
    """Self-normalised IPS: sum w r / sum w (its interval by the delta method on the ratio)."""
    w = target_p / logged_p
    value = float((w * reward).sum() / w.sum())
    return _interval(w * (reward - value) / w.mean() + value, value)


def doubly_robust(
    *, reward: np.ndarray, logged_p: np.ndarray, target_p: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray
) -> Estimate:
    """Doubly robust: the reward model's value of the target policy, corrected by IPS on its residuals.
    ``q_logged`` = qhat(x, a_logged); ``q_target`` = sum_a pi(a|x) qhat(x, a)."""
    return _interval(q_target + target_p / logged_p * (reward - q_logged))


# --- the update from the served log --------------------------------------------------------------


def arm_outcomes(*, policy_key: str, window_hours: int) -> list[tuple[str, str, int, int]]:
    """(context, arm, answers, answers clicked) of a policy, from the served log and click events
    (a "Product Clicked" naming the answer's recommendation_id within the window)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.arm_context, s.variant, count(*),
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM profiles_event e
                       WHERE e.profile_id = coalesce(p.merged_into_id, p.id) AND e.name = 'Product Clicked'
                         AND e.occurred_at >= s.created_at
                         AND e.occurred_at < s.created_at + make_interval(hours => %(window)s)
                         AND e.properties ->> 'recommendation_id' = s.id::text))
            FROM recommendations_recommendationserved s
            JOIN profiles_profile p ON p.id = s.profile_id
            WHERE s.policy = %(policy)s
            GROUP BY 1, 2
            """,
            {"policy": policy_key, "window": window_hours},
        )
        return cursor.fetchall()


def logged_rounds(*, policy_key: str, window_hours: int) -> list[tuple[str, str, float, int]]:
    """(context, arm, propensity, clicked 0/1) of every answer a policy chose."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.arm_context, s.variant, s.propensity,
                   EXISTS (SELECT 1 FROM profiles_event e
                           WHERE e.profile_id = coalesce(p.merged_into_id, p.id) AND e.name = 'Product Clicked'
                             AND e.occurred_at >= s.created_at
                             AND e.occurred_at < s.created_at + make_interval(hours => %(window)s)
                             AND e.properties ->> 'recommendation_id' = s.id::text)::int
            FROM recommendations_recommendationserved s
            JOIN profiles_profile p ON p.id = s.profile_id
            WHERE s.policy = %(policy)s
            """,
            {"policy": policy_key, "window": window_hours},
        )
        return cursor.fetchall()


def bandit_update(*, policy_id: int, seed: int | None = None) -> dict:
    """Recompute every context's arm shares from all of the policy's logged answers (idempotent), store
    them, and keep a snapshot of the overall shares for the chart."""
    from .models import BanditPolicy, BanditSnapshot
    from .services import _publish

    policy = BanditPolicy.objects.get(pk=policy_id)
    arms = [arm["key"] for arm in policy.arms]
    index = {key: i for i, key in enumerate(arms)}
    rows = arm_outcomes(policy_key=policy.key, window_hours=policy.window_hours)
    contexts: dict[str, dict] = {}
    counts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for context, arm, served, clicked in rows:
        if arm not in index:
            continue
        s, c = counts.setdefault(context, (np.zeros(len(arms)), np.zeros(len(arms))))
        s[index[arm]] += served
        c[index[arm]] += clicked
    rng = np.random.default_rng(seed)
    total = np.zeros(len(arms))
    for context, (s, c) in counts.items():
        shares = thompson_shares(s, c, burn_in=policy.burn_in, floor=policy.floor, rng=rng)
        contexts[context] = {
            "served": {a: int(s[i]) for i, a in enumerate(arms)},
            "clicks": {a: int(c[i]) for i, a in enumerate(arms)},
            "shares": {a: round(float(shares[i]), 6) for i, a in enumerate(arms)},
            "burn_in": bool((s < policy.burn_in).any()),
        }
        total += s.sum() * shares
    overall = {a: round(float(total[i] / total.sum()), 4) for i, a in enumerate(arms)} if total.sum() else {}
    now = timezone.now()
    with transaction.atomic():
        BanditPolicy.objects.filter(pk=policy.pk).update(state={"contexts": contexts}, updated_at=now)
        BanditSnapshot.objects.create(policy=policy, at=now, shares=overall, contexts=contexts)
    _publish()
    return {"contexts": len(contexts), "shares": overall}


def policy_evaluation(*, policy_id: int) -> dict:
    """The live (logging) policy's observed value beside IPS, SNIPS and doubly robust estimates of
    candidate policies: "always arm X" for each arm, and "greedy per context" (the arm with the best
    observed rate in each context). The reward model of DR is the per context x arm mean click rate."""
    from .models import BanditPolicy

    policy = BanditPolicy.objects.get(pk=policy_id)
    rows = logged_rounds(policy_key=policy.key, window_hours=policy.window_hours)
    arms = [arm["key"] for arm in policy.arms]
    if not rows:
        return {"n": 0, "live": None, "candidates": {}}
    context = np.array([r[0] for r in rows])
    arm = np.array([r[1] for r in rows])
    logged_p = np.array([max(float(r[2]), 1e-6) for r in rows])
    reward = np.array([r[3] for r in rows], dtype=float)
    contexts = sorted(set(context))
    q = {}
    for c in contexts:
        for a in arms:
            mask = (context == c) & (arm == a)
            q[(c, a)] = float(reward[mask].mean()) if mask.any() else float(reward[context == c].mean())
    greedy = {c: max(arms, key=lambda a, c=c: q[(c, a)]) for c in contexts}
    candidates = {f"always {a}": dict.fromkeys(contexts, a) for a in arms}
    candidates["greedy per context"] = greedy
    q_logged = np.array([q[(c, a)] for c, a in zip(context, arm, strict=True)])
    out = {}
    for name, choice in candidates.items():
        target_p = np.array([1.0 if choice[c] == a else 0.0 for c, a in zip(context, arm, strict=True)])
        q_target = np.array([q[(c, choice[c])] for c in context])
        out[name] = {
            est: vars(fn)
            for est, fn in (
                ("ips", ips(reward=reward, logged_p=logged_p, target_p=target_p)),
                ("snips", snips(reward=reward, logged_p=logged_p, target_p=target_p)),
                (
                    "dr",
                    doubly_robust(
                        reward=reward, logged_p=logged_p, target_p=target_p, q_logged=q_logged, q_target=q_target
                    ),
                ),
            )
        }
    live = _interval(reward)
    return {"n": len(rows), "live": vars(live), "candidates": out}
