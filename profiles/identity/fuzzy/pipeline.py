"""The matcher without a database: a record table in, scored pairs and decisions out.

``identity_match`` (service.py) reads profiles into a ``RecordTable``, runs ``score_and_decide`` and
writes what it decided; the benchmark's diagnosis and the review-queue simulation run the same
function on a file's records directly, so what they measure is the product's method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import blocking, model
from .cluster import Decisions, decide
from .compare import COMPARISONS, compare
from .records import RecordTable, record_from

COMPARE_CHUNK = 200_000
RANDOM_PAIRS = 500_000
TRAINING_PAIRS_PER_RULE = 200_000
SEED = 20260301  # estimation samples random pairs; a fixed seed makes runs repeatable


@dataclass
class Scored:
    a: np.ndarray
    b: np.ndarray
    levels: np.ndarray
    bits: np.ndarray
    p: np.ndarray
    params: model.Parameters
    prior: float
    decisions: Decisions | None = None


def estimate(
    table: RecordTable, *, approved: np.ndarray | None = None, rejected: np.ndarray | None = None
) -> model.Parameters:
    return model.estimate(
        table,
        rng=np.random.default_rng(SEED),
        approved=approved,
        rejected=rejected,
        random_pairs=RANDOM_PAIRS,
        training_pairs=TRAINING_PAIRS_PER_RULE,
    )


def score_pairs(
    table: RecordTable,
    params: model.Parameters,
    *,
    query: np.ndarray | None = None,
    calibrate: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Scored:
    """Candidate pairs from blocking, their comparison levels, evidence and match probabilities.
    ``calibrate`` estimates the prior (matches per record) from these pairs' own posteriors."""
    a, b = blocking.candidate_pairs(table, query=query)
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
    if calibrate:
        queried = None if query is None else int(query.sum())
        params.matches_per_record = model.estimate_matches_per_record(params, bits, len(table), query_records=queried)
        params.records = len(table)
    prior = params.prior(len(table))
    return Scored(a, b, levels, bits, model.probabilities(bits, prior), params, prior)


def rescorer(table: RecordTable, scored: Scored) -> Callable:
    freq = model.Frequencies.of(table)

    def score(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        extra = compare(table, x, y)
        bits = model.log2_bayes_factors(scored.params, extra, table, x, freq, y)
        return extra, model.probabilities(bits, scored.prior)

    return score


def field_evidence(table: RecordTable, scored: Scored) -> Callable:
    """``evidence(x, y)`` for ``decide``: pairs' evidence per comparison (``model.field_bits``)."""
    freq = model.Frequencies.of(table)

    def evidence(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        levels = compare(table, x, y)
        return levels, model.field_bits(scored.params, levels, table, x, freq, y)

    return evidence


def score_and_decide(
    table: RecordTable,
    params: model.Parameters,
    *,
    auto: float,
    review: float,
    never: set[tuple[int, int]] | None = None,
    query: np.ndarray | None = None,
    calibrate: bool = True,
) -> Scored:
    scored = score_pairs(table, params, query=query, calibrate=calibrate)
    scored.decisions = decide(
        table,
        scored.a,
        scored.b,
        scored.levels,
        scored.p,
        auto=auto,
        review=review,
        never=never or set(),
        prior=scored.prior,
        score=rescorer(table, scored),
        households=params.households_seen(),
        evidence=field_evidence(table, scored),
        m=params.m,
    )
    return scored


def table_from_rows(rows: list[dict]) -> RecordTable:
    """A table from rows of the identity CSV (PROTOCOL.md I), as ingestion would state them."""
    from profiles.normalize import normalize_email, normalize_phone

    records = []
    for row in rows:
        traits = {k: (row.get(k) or "").strip() for k in ("first_name", "last_name", "birth_date")}
        traits["address"] = {k: (row.get(k) or "").strip() for k in ("street", "city", "postal_code", "state")}
        email = normalize_email(row.get("email") or "") if row.get("email") else None
        phone = normalize_phone(row.get("phone") or "") if row.get("phone") else None
        records.append(record_from(traits, [email] if email else [], [phone] if phone else []))
    return RecordTable.build(list(range(len(rows))), records)
