"""``identity_match``: probabilistic identity resolution over live profiles (the scheduled job's service).

Steps: load every live profile as a record (chunked, values only) -> estimate the model from the
data (u from random pairs, m by EM per training rule, reviewers' decisions as pseudo-counts, the
prior from the candidates) -> block -> compare -> score -> decide (conflict refusals, coherent
clusters) -> write: merges through ``profile_merge`` (reason ``fuzzy``, field-by-field evidence,
the probability as score; undone with ``profile_unmerge``), the rest of the likely pairs to the
review queue through ``candidate_file``.

Incremental runs (``profile_ids``) compare those profiles with everyone and reuse the parameters
the last full run estimated (kept in the cache) when the population has not changed much.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.db.models import Q

from profiles.identity.bulk import candidates_file_bulk, profiles_merge_bulk
from profiles.models import CandidateStatus, MatchCandidate, Merge, MergeStatus, Profile

from . import blocking, model
from . import review as review_queue
from .cluster import conflicts, decide, refusal
from .compare import COMPARISONS, compare
from .records import RecordTable, record_from, records_load

logger = logging.getLogger("cdp.identity.fuzzy")

REASON = "fuzzy"
PARAMS_CACHE_KEY = "cdp:identity:fuzzy:parameters"
PARAMS_CACHE_SECONDS = 7 * 24 * 3600
RANDOM_PAIRS = 500_000
TRAINING_PAIRS_PER_RULE = 200_000
COMPARE_CHUNK = 200_000
MERGE_BATCH = 1000  # clusters per transaction (set-based writes)
CANDIDATE_BATCH = 5000  # review candidates per transaction
MAX_LABELLED = 10_000
WRITE_PHASES = ("merge", "candidates", "queue")
SEED = 20260301  # estimation samples random pairs; a fixed seed makes runs repeatable


@dataclass
class MatchReport:
    profiles: int = 0
    query_profiles: int = 0
    candidate_pairs: int = 0
    compared: int = 0
    merged: int = 0
    queued: int = 0  # open pairs above the review queue's line (pending)
    deferred: int = 0  # open pairs below it
    refused: int = 0
    clusters: int = 0
    seconds: float = 0.0
    incremental: bool = False
    parameters_reused: bool = False
    refusals: dict = field(default_factory=dict)
    # seconds per phase: load, estimate, block, compare, decide, then the writes: merge, candidates, queue
    timings: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.profiles} profiles, {self.candidate_pairs} candidate pairs compared, {self.merged} merged, "
            f"{self.queued} to review ({self.deferred} deferred below the line), {self.refused} refused, "
            f"{self.seconds:.1f}s"
        )


def thresholds() -> tuple[float, float]:
    """(auto-merge, review) match probabilities from settings."""
    auto = float(getattr(settings, "CDP_FUZZY_AUTO_MERGE_PROBABILITY", 0.99))
    review = float(getattr(settings, "CDP_FUZZY_REVIEW_PROBABILITY", 0.5))
    return auto, min(review, auto)


def identity_match(
    *,
    profile_ids: list | None = None,
    progress: Callable[[int, int], None] | None = None,
    population: list | None = None,
    reuse_parameters: bool | None = None,
    store_parameters: bool = True,
    phase: Callable[[str, float, dict], None] | None = None,
) -> MatchReport:
    """Find the same person behind different profiles; merge the sure ones, queue the likely ones.

    ``profile_ids=None`` compares all live profiles with each other; otherwise those profiles (merged
    ones are followed to their survivor) with everyone. ``population`` limits the run to those
    profiles' survivors (an evaluation's own records; None: every live profile).
    ``reuse_parameters`` (default: only for incremental runs) takes the model the last full run
    estimated from the cache; a full run stores what it estimated unless ``store_parameters`` is
    false (an evaluation must not leave it behind). ``progress(done, total)`` is called per phase:
    loading, comparing, writing. ``phase(name, seconds, counts)`` is called as each phase ends (load,
    estimate, block, compare, decide, merge, candidates, queue), so a long run shows where its time goes as it goes.
    """
    clock = _Clock(phase)
    auto, review = thresholds()
    report = MatchReport(incremental=profile_ids is not None)
    if profile_ids is not None and not len(profile_ids):  # nothing changed: nothing to read or compare
        report.timings = clock.laps
        return report
    table = records_load(progress=progress, only=None if population is None else _live_ids(population))
    report.profiles = n = len(table)
    index = {pid: i for i, pid in enumerate(table.ids)}
    query = None
    if profile_ids is not None:
        query = np.zeros(n, dtype=bool)
        query[[index[pid] for pid in _live_ids(profile_ids) if pid in index]] = True
        report.query_profiles = int(query.sum())
    clock.lap("load", profiles=n)
    if n < 2 or (query is not None and not query.any()):
        report.seconds, report.timings = clock.total(), clock.laps
        return report

    reuse = reuse_parameters if reuse_parameters is not None else profile_ids is not None
    params = _cached_parameters(n) if reuse else None
    report.parameters_reused = params is not None
    if params is None:
        params = estimate_parameters(table, rng=np.random.default_rng(SEED))
    clock.lap("estimate", reused=report.parameters_reused)

    a, b = blocking.candidate_pairs(table, query=query)
    report.candidate_pairs = report.compared = len(a)
    clock.lap("block", pairs=len(a))
    freq = model.Frequencies.of(table)
    levels = np.empty((len(a), len(COMPARISONS)), dtype=np.int8)
    bits = np.empty(len(a))
    for start in range(0, len(a), COMPARE_CHUNK):
        stop = min(start + COMPARE_CHUNK, len(a))
        levels[start:stop] = compare(table, a[start:stop], b[start:stop])
        bits[start:stop] = model.log2_bayes_factors(
            params, levels[start:stop], table, a[start:stop], freq, b[start:stop]
        )
        if progress:
            progress(stop, len(a))
    if not report.parameters_reused:
        queried = None if query is None else int(query.sum())
        params.matches_per_record = model.estimate_matches_per_record(params, bits, n, query_records=queried)
        params.records = n
        if store_parameters and (query is None or query.all()):  # every profile took part: a full run
            cache.set(PARAMS_CACHE_KEY, params.state(), PARAMS_CACHE_SECONDS)
    prior = params.prior(n)
    # only pairs at least as likely as the review line can merge or be reviewed (``decide`` looks at
    # no other): keep those and let the candidate pairs go (tens of millions at 1,000,000 profiles)
    likely = np.concatenate(
        [
            start + np.flatnonzero(model.probabilities(bits[start : start + COMPARE_CHUNK], prior) >= review)
            for start in range(0, len(a), COMPARE_CHUNK)
        ]
        or [np.empty(0, dtype=np.int64)]
    )
    a, b, levels, bits = a[likely], b[likely], levels[likely], bits[likely]
    del likely
    p = model.probabilities(bits, prior)
    clock.lap("compare", pairs=report.compared, likely=len(a))

    def score(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        extra = compare(table, x, y)
        return extra, model.probabilities(model.log2_bayes_factors(params, extra, table, x, freq, y), prior)

    def evidence(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        extra = compare(table, x, y)
        return extra, model.field_bits(params, extra, table, x, freq, y)

    never = _never_merge_pairs(index)
    decisions = decide(
        table,
        a,
        b,
        levels,
        p,
        auto=auto,
        review=review,
        never=never,
        prior=prior,
        score=score,
        households=params.households_seen(),
        evidence=evidence,
        m=params.m,
    )
    clock.lap("decide", clusters=len(decisions.clusters), review_pairs=len(decisions.review))
    evidence_of = _Evidence(table, a, b, levels, bits, p, params, prior)
    report.merged, refused_by_guard, winners = _apply_merges(decisions, table, evidence_of, progress)
    report.clusters = len(decisions.clusters)
    clock.lap("merge", merged=report.merged)
    filed = _file_candidates(decisions, table, winners, evidence_of)
    clock.lap("candidates", filed=filed)
    # an evaluation's own pairs: its profiles, also those merged away (ingestion filed pairs of them)
    own = None
    if population is not None:
        live = list(table.ids)
        own = set(Profile.objects.filter(Q(pk__in=live) | Q(merged_into__in=live)).values_list("pk", flat=True))
    records = len(own) if own is not None else Profile.objects.count()  # merged-away ones are records too
    line = review_queue.queue_line(records=records, population=own)
    report.queued, report.deferred = line["pending"], line["deferred"]
    clock.lap("queue", queued=report.queued, deferred=report.deferred)
    reasons = Counter(decisions.refused.values()) + refused_by_guard
    report.refusals, report.refused = dict(reasons), sum(reasons.values())
    report.parameters = params.as_dict()
    report.seconds, report.timings = clock.total(), clock.laps
    logger.info("identity_match: %s", report.line())
    return report


class _Clock:
    def __init__(self, phase: Callable[[str, float, dict], None] | None = None) -> None:
        self.started = self.last = time.monotonic()
        self.laps: dict[str, float] = {}
        self.phase = phase

    def lap(self, name: str, **counts) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self.last, 3)
        self.last = now
        logger.info("identity_match: %s %.1f s %s", name, self.laps[name], counts)
        if self.phase:
            self.phase(name, self.laps[name], counts)

    def total(self) -> float:
        return round(time.monotonic() - self.started, 3)


# --- the model ----------------------------------------------------------------------------------------


def estimate_parameters(table: RecordTable, *, rng: np.random.Generator) -> model.Parameters:
    """u from random pairs, m from EM per training rule, refined by reviewers' decisions."""
    approved, rejected = labelled_levels()
    return model.estimate(
        table,
        rng=rng,
        approved=approved,
        rejected=rejected,
        random_pairs=RANDOM_PAIRS,
        training_pairs=TRAINING_PAIRS_PER_RULE,
    )


def _cached_parameters(records: int) -> model.Parameters | None:
    state = cache.get(PARAMS_CACHE_KEY)
    if not state:
        return None
    params = model.Parameters.from_state(state)
    if params is None or not (0.5 * params.records <= records <= 2 * params.records + 100):
        return None  # the population changed too much: estimate again
    return params


def labelled_levels() -> tuple[np.ndarray, np.ndarray]:
    """Comparison levels of pairs reviewers decided: approved ones, then rejected ones and undone
    fuzzy merges. Profiles are compared as they were when the decision was taken where a merge
    snapshot exists (an approved pair is usually one profile by now), else as they are."""
    pairs: list[tuple[dict, dict, bool]] = []
    decided = MatchCandidate.objects.filter(status__in=[CandidateStatus.APPROVED, CandidateStatus.REJECTED])
    rows = list(decided.order_by("-decided_at").values_list("profile_a_id", "profile_b_id", "status")[:MAX_LABELLED])
    ids = {pid for x, y, _ in rows for pid in (x, y)}
    traits = dict(Profile.objects.filter(pk__in=ids).values_list("pk", "traits"))
    snapshots = {}
    merges = Merge.objects.filter(status=MergeStatus.MERGED, winner_id__in=ids, loser_id__in=ids)
    for winner, loser, before_w, before_l in merges.values_list(
        "winner_id", "loser_id", "winner_before", "loser_before"
    ):
        snapshots[frozenset((winner, loser))] = (before_w.get("traits", {}), before_l.get("traits", {}))
    for x, y, status in rows:
        snap = snapshots.get(frozenset((x, y)))
        left, right = snap if snap else (traits.get(x), traits.get(y))
        if left is not None and right is not None:
            pairs.append((left, right, status == CandidateStatus.APPROVED))
    undone = Merge.objects.filter(reason=REASON, status=MergeStatus.MERGED, undone_at__isnull=False)
    for before_w, before_l in undone.order_by("-undone_at").values_list("winner_before", "loser_before")[:MAX_LABELLED]:
        pairs.append((before_w.get("traits", {}), before_l.get("traits", {}), False))
    if not pairs:
        empty = np.empty((0, len(COMPARISONS)), dtype=np.int8)
        return empty, empty
    records = [record_from(t) for left, right, _ in pairs for t in (left, right)]
    table = RecordTable.build(list(range(len(records))), records)
    even = np.arange(0, len(records), 2)
    levels = compare(table, even, even + 1)
    label = np.array([ok for _, _, ok in pairs])
    return levels[label], levels[~label]


# --- reading guards -------------------------------------------------------------------------------------


def _live_ids(profile_ids: list) -> set:
    rows = Profile.objects.filter(pk__in=list(profile_ids)).values_list("pk", "merged_into_id")
    return {merged or pid for pid, merged in rows}


def _never_merge_pairs(index: dict) -> set[tuple[int, int]]:
    """Rejected pairs as index pairs of live profiles (a merged-away side stands for its survivor)."""
    rows = list(
        MatchCandidate.objects.filter(status=CandidateStatus.REJECTED).values_list("profile_a_id", "profile_b_id")
    )
    ids = {pid for row in rows for pid in row}
    survivor = dict(Profile.objects.filter(pk__in=ids, merged_into__isnull=False).values_list("pk", "merged_into_id"))
    out = set()
    for x, y in rows:
        i, j = index.get(survivor.get(x, x)), index.get(survivor.get(y, y))
        if i is not None and j is not None and i != j:
            out.add((min(i, j), max(i, j)))
    return out


# --- evidence ---------------------------------------------------------------------------------------------


class _Evidence:
    """Field-by-field comparison of a pair, as stored on merges and candidates for reviewers."""

    def __init__(self, table, a, b, levels, bits, p, params: model.Parameters, prior: float) -> None:
        self.table, self.a, self.b, self.levels, self.bits, self.p = table, a, b, levels, bits, p
        self.weights = params.weights()
        self.prior = prior
        self.households = params.households_seen()

    def of(self, k: int, **extra) -> dict:
        i, j = int(self.a[k]), int(self.b[k])
        left, right = self.table.record(i), self.table.record(j)
        values = {
            "first_name": ("first_name",),
            "last_name": ("last_name",),
            "birth_date": ("birth_date",),
            "address": ("street", "postal_code", "city"),
            "email": ("emails",),
            "phone": ("phones",),
        }
        fields = {}
        for n, comparison in enumerate(COMPARISONS):
            level = int(self.levels[k, n])
            fields[comparison.name] = {
                "a": _show(left, values[comparison.name]),
                "b": _show(right, values[comparison.name]),
                "level": comparison.levels[level] if level >= 0 else None,
                "bits": round(float(self.weights[n][level]), 2) if level >= 0 else 0.0,
            }
        found = conflicts(self.table, self.a[k : k + 1], self.b[k : k + 1], self.levels[k : k + 1])[0]
        if extra.get("refused") is None:  # why it would not merge automatically, whatever its score
            extra["refused"] = refusal(found, self.levels[k], households=self.households)
        return {
            "model": "fellegi-sunter",
            "probability": round(float(self.p[k]), 6),
            "bits": round(float(self.bits[k]), 2),
            "prior": float(f"{self.prior:.6g}"),
            "profiles": [str(self.table.ids[i]), str(self.table.ids[j])],
            "fields": fields,
            "conflicts": found,
            **extra,
        }


def _show(record: dict, keys: tuple[str, ...]):
    parts = [record[k] for k in keys]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(str(x) for x in parts if x)


# --- writing ----------------------------------------------------------------------------------------------


def _apply_merges(decisions, table: RecordTable, evidence_of: _Evidence, progress) -> tuple[int, Counter, dict]:
    """Merge each cluster into its oldest profile through the bulk path (``profiles_merge_bulk``: the
    guards are checked again on the locked rows, each merge keeps its undo record).

    Clusters are written ``MERGE_BATCH`` to a transaction. A batch that fails (a deadlock with
    ingestion) is retried cluster by cluster; a cluster that fails again is left for the next run."""
    merged = 0
    refused: Counter = Counter()
    winners: dict[int, object] = {}  # record index -> live profile id it ended in
    clusters = [_ordered_members(members, decisions, evidence_of, table) for members in decisions.clusters]

    def evidence(k: int, cluster: list[str]) -> dict:
        return evidence_of.of(decisions.links[k], cluster=cluster)

    def score(k: int) -> float:
        return float(evidence_of.p[decisions.links[k]])

    def write(batch) -> None:
        nonlocal merged
        outcome = profiles_merge_bulk(clusters=batch, reason=REASON, evidence=evidence, score=score)
        merged += outcome.merged
        refused.update(outcome.refused)
        winners.update(outcome.ended_in)

    for start in range(0, len(clusters), MERGE_BATCH):
        batch = clusters[start : start + MERGE_BATCH]
        try:
            write(batch)
        except DatabaseError as exc:
            logger.info("identity_match: merging a batch again cluster by cluster after %s", exc)
            for members in batch:
                try:
                    write([members])
                except DatabaseError:
                    logger.warning("identity_match: cluster %s left for the next run", members, exc_info=True)
        if progress:
            progress(min(start + MERGE_BATCH, len(clusters)), len(clusters))
    return merged, refused, winners


def _ordered_members(members: list[int], decisions, evidence_of: _Evidence, table: RecordTable) -> list[tuple]:
    """(record index, profile id), strongest link first (the order single merges took them in)."""
    ordered = sorted(members, key=lambda i: -evidence_of.p[decisions.links[i]])
    return [(i, table.ids[i]) for i in ordered]


def _file_candidates(decisions, table: RecordTable, winners: dict, evidence_of: _Evidence) -> int:
    """Review candidates (review.py): one per pair of live profiles with the strongest record pair's
    evidence, its uncertainty and how many record pairs it stands for; filed in bulk (pairs a
    reviewer decided are left alone). ``review.queue_line`` then decides which are pending."""
    best: dict[tuple, int] = {}
    count: Counter = Counter()
    for k in decisions.review:
        i, j = int(evidence_of.a[k]), int(evidence_of.b[k])
        x, y = winners.get(i, table.ids[i]), winners.get(j, table.ids[j])
        if x == y:
            continue
        key = (min(str(x), str(y)), max(str(x), str(y)))
        count[key] += 1
        if key not in best or evidence_of.p[k] > evidence_of.p[best[key]]:
            best[key] = k
    chosen = []
    for (x, y), k in best.items():
        p = float(evidence_of.p[k])
        doubt = 1.0 if k in decisions.refused else review_queue.uncertainty(p)  # model and rules disagree
        chosen.append((x, y, p, count[(x, y)], doubt, k))
    queued = 0
    for chunk in _chunks(chosen, CANDIDATE_BATCH):
        pairs = [
            (
                x,
                y,
                p,
                evidence_of.of(
                    k,
                    refused=decisions.refused.get(k),
                    uncertainty=round(doubt, 4),
                    record_pairs=n,
                    pattern=review_queue.pattern(evidence_of.levels[k]),
                ),
            )
            for x, y, p, n, doubt, k in chunk
        ]
        queued += candidates_file_bulk(pairs=pairs, reason=REASON)
    return queued


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
