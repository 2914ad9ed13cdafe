"""Ingestion: validated tracking calls become stored events on the right profile, in one transaction.

The path reads as stages, each its own module (the API's ``validate`` checked each call first):

1. ``parse``: the normalised identifiers each call carries;
2. ``dedupe``: events already stored (same source and ``messageId``) or repeated are skipped;
3. ``filters``: consent (suppressed or erased people, analytics denied) refuses calls before any
   identity or trait work;
4. ``stitch``: identity for the whole batch (fast path for known people, bulk creation of new
   ones, ``profile_resolve`` for the rest), seen times and traits;
5. ``store``: one multi-row INSERT into the events table;
6. ``followup``: ``on_events_stored`` subscribers, a ``PendingWork`` mark per touched profile,
   a worker asked on commit.

Accepted means durable: events, identity changes and pending marks commit together before the HTTP
response. A deadlock or serialization failure retries the whole transaction.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from django.db import DatabaseError, OperationalError, transaction
from psycopg import errors as pg_errors

from cdp.db import uuid_texts
from profiles.identity.merge import ProfileVanished
from profiles.models import Source

from . import dedupe, filters, followup, parse, stitch, store
from .parse import event_identifiers
from .validate import CleanEvent

logger = logging.getLogger("cdp.ingest")

# retries by cause since the process started (the concurrency tests and `make reliability` read it)
retry_counts: Counter = Counter()
RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable)
MAX_ATTEMPTS = 6

__all__ = ["RETRYABLE", "IngestResult", "event_identifiers", "events_ingest", "retry_counts"]


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0  # refused by an ingestion filter (suppressed person, analytics denied)
    profile_ids: set = field(default_factory=set)
    event_profiles: list = field(default_factory=list)  # profile id per input event (None for duplicates)
    deferred: list = field(default_factory=list)  # indexes left for a later batch (``deferral``)


def _is_retryable(exc: Exception) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, RETRYABLE) or isinstance(exc, RETRYABLE)


def events_ingest(*, source: Source, events: list[CleanEvent], lock_identifiers: bool = True) -> IngestResult:
    """Store events durably and resolve their identities; retried whole on deadlock.

    ``lock_identifiers=False`` is only for callers that ingest inside one long transaction nobody
    else can see (``evaluate_identity`` rolls everything back): the per-identifier advisory locks
    guard nothing there and would pile up until PostgreSQL's lock table is full.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                result = _ingest(source, events, lock_identifiers=lock_identifiers)
            return result
        except ProfileVanished as exc:  # erased under us: the retry sees the erasure (suppression)
            if attempt == MAX_ATTEMPTS:
                raise
            logger.info("ingest: retrying after %s (attempt %d)", exc, attempt)
            continue
        except (OperationalError, DatabaseError) as exc:
            if attempt == MAX_ATTEMPTS or not _is_retryable(exc):
                raise
            cause = type(exc.__cause__ or exc).__name__
            retry_counts[cause] += 1
            logger.info("ingest: retrying after %s (attempt %d)", cause, attempt)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")


def _ingest(
    source: Source,
    events: list[CleanEvent],
    *,
    lock_identifiers: bool = True,
    stored_checked: bool = False,
    intake_ids: list[int] | None = None,
    deferral: stitch.Deferral | None = None,
) -> IngestResult:
    """``stored_checked``: the caller knows none of the events is stored yet or repeated (the stitch
    workers read that with the intake rows), so the dedupe query is skipped. ``intake_ids``: the
    intake row of each event (the stitch workers): the events table is written from those rows.
    ``deferral`` (the stitch workers, one per batch): events that need a lock another transaction holds
    are left out and listed in ``result.deferred`` instead of waited for (kept in the log)."""
    result = IngestResult(event_profiles=[None] * len(events))
    if stored_checked:
        fresh = list(range(len(events)))
    else:
        fresh, result.duplicates = dedupe.fresh_indexes(source, events)
    parse.identifiers_attach(events, fresh)
    kept = filters.identifiers_filter(events, fresh)
    result.dropped += len(fresh) - len(kept)
    fresh = kept
    if not fresh:
        return result

    assigned, fresh = stitch.identities_resolve(
        events, fresh, result, lock_identifiers=lock_identifiers, deferral=deferral
    )
    if not fresh and result.deferred:
        return result  # every call left for a later batch
    # lock what we write, re-point merged-away profiles
    seen = stitch.lock_live(assigned, held=deferral.locked if deferral is not None else None)
    kept = filters.profiles_filter(events, fresh, assigned)
    result.dropped += len(fresh) - len(kept)
    fresh = kept
    # filters decide before any write: a refused event moves no seen time and writes no trait
    kept_set = set(fresh)
    stitch.profiles_update(events, {i: pid for i, pid in assigned.items() if i in kept_set}, seen)
    rows = [(events[i], assigned[i]) for i in fresh]
    if intake_ids is None:
        inserted = store.events_insert(source, rows)
    else:
        inserted = store.events_insert_from_intake(rows, [intake_ids[i] for i in fresh])
    texts = uuid_texts(list(assigned.values()))
    for index, text in zip(assigned, texts, strict=True):
        result.event_profiles[index] = text
    result.accepted = inserted
    result.duplicates += len(fresh) - inserted
    result.profile_ids = set(texts)
    followup.profiles_follow_up(set(assigned.values()))
    return result
