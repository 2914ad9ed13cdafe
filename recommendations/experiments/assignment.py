"""Assignment: which variant (or bandit arm) a shopper gets, decided in-process.

- ``bucket(salt, unit)``: BLAKE2b (64 bits) of ``salt:unit`` modulo 10,000. Deterministic, the same
  in every process and language with a BLAKE2b; independent between experiments because every
  experiment has its own random salt, and every layer its own (``layer:<name>``).
- ``reallocate(old, weights)``: a new bucket → variant map for new weights that moves only the
  buckets it must (a variant that shrinks gives up its highest buckets; a variant that grows takes
  freed ones). See docs/decisions/0022-experiment-bucket-hashing.md.
- ``Config``: the running experiments and bandit policies of the shop, loaded from PostgreSQL into
  each process and reloaded when their version in Redis changes (checked at most once a second), so
  that ``strategy_for`` costs no database or network round trip on a request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from hashlib import blake2b

from django.core.cache import cache

from .models import BUCKETS
from .strategy import DEFAULT, Strategy

logger = logging.getLogger("cdp.recommendations")

VERSION_KEY = "experiments:config-version"
CHECK_SECONDS = 1.0


def bucket(salt: str, unit: str) -> int:
    """The unit's bucket (0..9999) under this salt."""
    digest = blake2b(f"{salt}:{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def layer_salt(layer: str) -> str:
    return f"layer:{layer}"


# --- allocation: bucket ranges per variant -----------------------------------------------------


def expand(allocation: list) -> list[str | None]:
    """[[first, after_last, variant], ...] → a list of 10,000 variant keys (None: unallocated)."""
    out: list[str | None] = [None] * BUCKETS
    for first, after, key in allocation:
        out[first:after] = [key] * (after - first)
    return out


def compress(buckets: list[str | None]) -> list[list]:
    runs: list[list] = []
    for i, key in enumerate(buckets):
        if key is None:
            continue
        if runs and runs[-1][1] == i and runs[-1][2] == key:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, key])
    return runs


def targets(weights: dict[str, int]) -> dict[str, int]:
    """Buckets per variant for weights in percent (summing to 100): weight x 100 each."""
    return {key: weight * BUCKETS // 100 for key, weight in weights.items()}


def reallocate(old: list, weights: dict[str, int]) -> list[list]:
    """The allocation for ``weights`` that keeps every bucket it can where ``old`` put it."""
    buckets = expand(old)
    want = targets(weights)
    have: dict[str, list[int]] = {key: [] for key in want}
    free: list[int] = []
    for i, key in enumerate(buckets):
        if key in have:
            have[key].append(i)
        else:
            free.append(i)  # unallocated, or a variant that no longer exists
    for key, owned in have.items():
        excess = len(owned) - want[key]
        if excess > 0:  # shrink: release the highest buckets
            free.extend(owned[-excess:])
            del owned[-excess:]
    free.sort()
    for key, owned in have.items():
        missing = want[key] - len(owned)
        if missing > 0:
            owned.extend(free[:missing])
            del free[:missing]
    out: list[str | None] = [None] * BUCKETS
    for key, owned in have.items():
        for i in owned:
            out[i] = key
    return compress(out)


def moved(old: list, new: list) -> int:
    """Buckets whose variant changed (both allocated)."""
    a, b = expand(old), expand(new)
    return sum(1 for x, y in zip(a, b, strict=True) if x is not None and x != y)


# --- the in-process configuration --------------------------------------------------------------


@dataclass
class LiveVariant:
    key: str
    strategy: Strategy


@dataclass
class LiveExperiment:
    key: str
    salt: str
    layer: str
    layer_start: int
    layer_end: int
    segments: frozenset[str]
    buckets: list[str | None]
    variants: dict[str, LiveVariant]
    overrides: dict[str, str]  # profile id -> variant key
    shipped: Strategy | None = None  # a shipped experiment serves its winner to everybody


@dataclass
class LivePolicy:
    key: str
    arms: dict[str, Strategy]
    context_segments: tuple[str, ...]
    shares: dict[str, list[tuple[str, float]]]  # context key -> [(arm, cumulative probability)]
    uniform: list[tuple[str, float]]


@dataclass
class Config:
    version: object = None
    loaded_at: float = 0.0
    by_placement: dict[str, list[LiveExperiment]] = field(default_factory=dict)
    shipped: dict[str, Strategy] = field(default_factory=dict)  # placement -> strategy
    policies: dict[str, LivePolicy] = field(default_factory=dict)  # placement -> policy


def variant_strategy(experiment_key: str | None, variant) -> Strategy:
    """A Variant row (or a bandit arm dict) as the strategy serving carries out."""
    get = variant.get if isinstance(variant, dict) else lambda name, default=None: getattr(variant, name, default)
    return Strategy(
        experiment=experiment_key,
        variant=get("key"),
        personalised=bool(get("personalised", True)),
        model_version=get("model_version"),
        rerank=bool(get("rerank", True)),
        rule_set=get("rule_set") or None,
    )


def context_key(*, segment: str, placement: str, device: str) -> str:
    return f"{segment or '-'}|{placement or '-'}|{device or '-'}"


def load() -> Config:
    """Read the running experiments, shipped winners and running bandit policies."""
    from .models import BanditPolicy, BanditStatus, Experiment, ExperimentOverride, ExperimentStatus

    config = Config(loaded_at=time.monotonic())
    experiments = Experiment.objects.filter(
        status__in=[ExperimentStatus.RUNNING, ExperimentStatus.SHIPPED]
    ).prefetch_related("variants")
    running_ids = []
    live: dict[int, LiveExperiment] = {}
    for exp in experiments.order_by("layer", "layer_start", "pk"):
        variants = {v.key: LiveVariant(v.key, variant_strategy(exp.key, v)) for v in exp.variants.all()}
        if exp.status == ExperimentStatus.SHIPPED:
            winner = next((v for v in exp.variants.all() if v.key == exp.shipped_variant), None)
            if winner is not None:
                strategy = variant_strategy(None, winner)
                for placement in exp.placements:
                    config.shipped[placement] = Strategy(
                        personalised=strategy.personalised,
                        model_version=strategy.model_version,
                        rerank=strategy.rerank,
                        rule_set=strategy.rule_set,
                    )
            continue
        item = LiveExperiment(
            key=exp.key,
            salt=exp.salt,
            layer=exp.layer,
            layer_start=exp.layer_start,
            layer_end=exp.layer_end,
            segments=frozenset(exp.target_segments),
            buckets=expand(exp.allocation),
            variants=variants,
            overrides={},
        )
        live[exp.pk] = item
        running_ids.append(exp.pk)
        for placement in exp.placements:
            config.by_placement.setdefault(placement, []).append(item)
    for exp_id, profile_id, variant in ExperimentOverride.objects.filter(experiment_id__in=running_ids).values_list(
        "experiment_id", "profile_id", "variant"
    ):
        live[exp_id].overrides[str(profile_id)] = variant
    for policy in BanditPolicy.objects.filter(status=BanditStatus.RUNNING):
        arms = {arm["key"]: variant_strategy(None, arm) for arm in policy.arms}
        if not arms:
            continue
        n = len(arms)
        uniform = _cumulative([(key, 1.0 / n) for key in arms])
        shares = {
            context: _cumulative([(key, float(p)) for key, p in (entry.get("shares") or {}).items() if key in arms])
            for context, entry in (policy.state or {}).get("contexts", {}).items()
        }
        live_policy = LivePolicy(
            key=policy.key,
            arms=arms,
            context_segments=tuple(policy.context_segments),
            shares={c: s for c, s in shares.items() if s},
            uniform=uniform,
        )
        for placement in policy.placements:
            config.policies.setdefault(placement, live_policy)
    return config


def _cumulative(pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    total = sum(p for _, p in pairs)
    out, acc = [], 0.0
    for key, p in pairs:
        acc += p / total if total else 0.0
        out.append((key, acc))
    return out


class _Cache:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.checked_at = -1e9
        self.lock = threading.Lock()

    def invalidate(self) -> None:
        self.config = None
        self.checked_at = -1e9

    def get(self) -> Config:
        now = time.monotonic()
        config = self.config
        if config is not None and now - self.checked_at < CHECK_SECONDS:
            return config
        self.checked_at = now
        try:
            version = cache.get(VERSION_KEY, 0)
        except Exception as exc:  # Redis down: keep what we have, reload from PostgreSQL each minute
            logger.warning("experiments: Redis unavailable (%s)", exc)
            version = None
        if (
            config is None
            or (version is not None and version != config.version)
            or (version is None and now - config.loaded_at > 60)
        ):
            with self.lock:
                fresh = load()
                fresh.version = version
                self.config = config = fresh
        return config


live_config = _Cache()


def publish() -> None:
    """Tell every process to reload (after a commit that changed experiments or bandits)."""
    live_config.invalidate()
    try:
        try:
            cache.incr(VERSION_KEY)
        except ValueError:
            cache.set(VERSION_KEY, int(time.time() * 1000), timeout=None)
    except Exception as exc:
        logger.warning("experiments: could not publish the new configuration (%s)", exc)


# --- the decision --------------------------------------------------------------------------------

_random = random.Random()


def choose(
    *,
    profile_id: str | None,
    placement: str,
    device: str,
    segments: list[str],
    personalisation_consent: bool,
    config: Config | None = None,
) -> Strategy:
    """See strategy.strategy_for. Order: a running experiment on this placement that holds the shopper
    (first layer first), then a shipped winner, then a running bandit, then the default."""
    config = config or live_config.get()
    # no profile (no unit) or no personalisation consent: in no experiment and no bandit, ever
    if profile_id and personalisation_consent:
        layer_buckets: dict[str, int] = {}
        for exp in config.by_placement.get(placement, ()):
            if exp.segments and exp.segments.isdisjoint(segments):
                continue
            b = layer_buckets.get(exp.layer)
            if b is None:
                b = layer_buckets[exp.layer] = bucket(layer_salt(exp.layer), profile_id)
            if not exp.layer_start <= b < exp.layer_end:
                continue
            key = exp.overrides.get(profile_id) or exp.buckets[bucket(exp.salt, profile_id)]
            variant = exp.variants.get(key) if key else None
            if variant is not None:
                return variant.strategy
    shipped = config.shipped.get(placement)
    if shipped is not None:
        return shipped
    policy = config.policies.get(placement)
    if policy is not None and profile_id and personalisation_consent:
        segment = next((s for s in policy.context_segments if s in segments), "")
        context = context_key(segment=segment, placement=placement, device=device)
        cumulative = policy.shares.get(context) or policy.uniform
        draw = _random.random()
        previous = 0.0
        for arm, acc in cumulative:
            if draw < acc or arm == cumulative[-1][0]:
                s = policy.arms[arm]
                return Strategy(
                    experiment=None,
                    variant=arm,
                    policy=f"{policy.key}@{context}",
                    propensity=round(acc - previous, 6),
                    personalised=s.personalised,
                    model_version=s.model_version,
                    rerank=s.rerank,
                    rule_set=s.rule_set,
                )
            previous = acc
    return DEFAULT
