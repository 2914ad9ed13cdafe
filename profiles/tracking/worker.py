"""Stitch workers: the intake log is moved into the events table in large batches, by partition.

One batch is one transaction (docs/decisions/0039-intake-log.md):

1. take a partition that has rows: its ``IntakePartition`` row ``FOR UPDATE SKIP LOCKED`` (the
   least recently stitched first). The row lock is the lease: no other worker takes the partition
   while it is held; a killed worker's lock ends with its connection, and a stuck one's is ended
   by PostgreSQL after ``CDP_INTAKE_LEASE_SECONDS`` (``idle_in_transaction_session_timeout`` and
   ``statement_timeout``, set for the batch's transaction), after which another worker takes the
   same rows again;
2. read the partition's oldest ``CDP_INTAKE_BATCH`` rows in id order;
3. per source, the ingestion stages (``ingest._ingest``: dedupe against stored events, filters,
   identity for the whole batch, seen times and traits, one INSERT into the events table, pending
   work marked), in a savepoint;
4. delete the rows taken, note the partition's progress, commit.

A worker killed at any point loses nothing (the rows are deleted in the transaction that stores
their events) and doubles nothing (the events table is unique per source and ``messageId``).
Deadlocks and serialisation failures retry the whole batch. Any other error of a source's group
is narrowed down call by call: a call that fails on its own is set aside as ``IntakePoison`` with
its error and the rest go on.
"""

from __future__ import annotations

import json
import logging
import random
import time
import traceback

from django.conf import settings
from django.db import DatabaseError, InterfaceError, InternalError, OperationalError, connection, transaction

from profiles.identity.merge import ProfileVanished
from profiles.models import IntakePoison, Source

from .ingest import RETRYABLE, _ingest, retry_counts
from .intake import event_from_payload

logger = logging.getLogger("cdp.ingest")

MAX_ATTEMPTS = 6

_TAKE_SQL = (
    "SELECT p.number FROM profiles_intakepartition p "
    "WHERE p.number <> ALL(%s::smallint[]) "
    "AND EXISTS (SELECT 1 FROM profiles_intakeevent i WHERE i.partition = p.number) "
    "ORDER BY p.stitched_at NULLS FIRST, p.number LIMIT 1 FOR UPDATE OF p SKIP LOCKED"
)
_ENSURE_SQL = (
    "INSERT INTO profiles_intakepartition (number, stitched_total) "
    "SELECT g, 0 FROM generate_series(0, %s - 1) AS g "
    "UNION SELECT DISTINCT i.partition, 0 FROM profiles_intakeevent i "
    "ON CONFLICT (number) DO NOTHING RETURNING number"
)


def _retryable(exc: Exception) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, (*RETRYABLE, ProfileVanished)) or isinstance(cause, RETRYABLE)


def _not_the_calls_fault(exc: Exception) -> bool:
    """Errors of the database connection or of the moment (a lost connection, a batch ended by its
    lease, "kept moving, retry"): the batch fails and is taken again later, no call is set aside."""
    if _retryable(exc) or isinstance(exc, (OperationalError, InterfaceError, InternalError, RuntimeError)):
        return True
    return connection.connection is None or connection.connection.closed


def intake_stitch_batch() -> int | None:
    """Stitch one batch of one free partition; None when no partition with rows is free."""
    taken = _stitch_one(skip=())
    return taken[1] if taken else None


def intake_drain(*, max_batches: int = 100_000) -> int:
    """Stitch batches until no partition with rows is free; returns the calls taken.

    A partition whose batch was not full is not taken again in the same drain: under a steady
    trickle of calls a drain would otherwise loop on batches of a few calls, using a core for
    transactions of ~24 statements each. Calls that arrive after their partition was passed are
    taken by the task their own accept queued (at most a second later, ``intake_wake``)."""
    total = 0
    passed: list[int] = []
    for _ in range(max_batches):
        taken = _stitch_one(skip=passed)
        if taken is None:
            break
        partition, done = taken
        if done < settings.CDP_INTAKE_BATCH:
            passed.append(partition)
        total += done
    return total


def _stitch_one(*, skip) -> tuple[int, int] | None:
    """(partition, calls stitched) of one batch of a free partition not in ``skip``, or None."""
    ensured = False
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic(durable=True):
                taken = _take_partition(skip)
                if taken is not None:
                    return taken, _stitch_partition(taken)
            # nothing free: on first use the partition rows are made (committed on their own, so
            # no other worker waits for a batch's transaction to see them), then one more look
            if ensured or not _ensure_partitions():
                return None
            ensured = True
        except (DatabaseError, ProfileVanished) as exc:
            if attempt == MAX_ATTEMPTS or not _retryable(exc):
                raise
            retry_counts[type(exc.__cause__ or exc).__name__] += 1
            logger.info("stitch: retrying the batch after %s (attempt %d)", type(exc).__name__, attempt)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")


def _take_partition(skip) -> int | None:
    lease_ms = int(settings.CDP_INTAKE_LEASE_SECONDS * 1000)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, true), "
            "set_config('statement_timeout', %s, true)",
            [str(lease_ms), str(lease_ms)],
        )
        cursor.execute(_TAKE_SQL, [sorted(skip)])
        row = cursor.fetchone()
    return row[0] if row else None


def _ensure_partitions() -> bool:
    """Partition rows for every partition number in use (the configured count, and any rows left
    from an earlier count); True when some were missing."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_ENSURE_SQL, [settings.CDP_INTAKE_PARTITIONS])
        return bool(cursor.fetchall())


def _stitch_partition(partition: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, source_id, payload::text, received_at, message_id FROM profiles_intakeevent "
            "WHERE partition = %s ORDER BY id LIMIT %s",
            [partition, settings.CDP_INTAKE_BATCH],
        )
        rows = cursor.fetchall()
    groups: dict[int, list] = {}
    for row in rows:
        groups.setdefault(row[1], []).append(row)
    sources = Source.objects.in_bulk(list(groups))
    for source_id, group in groups.items():
        _stitch_group(sources.get(source_id), group)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM profiles_intakeevent WHERE id = ANY(%s)", [[row[0] for row in rows]])
        cursor.execute(
            "UPDATE profiles_intakepartition SET stitched_at = now(), stitched_total = stitched_total + %s "
            "WHERE number = %s",
            [len(rows), partition],
        )
    return len(rows)


def _stitch_group(source: Source | None, rows: list) -> None:
    """One source's calls of the batch, in a savepoint; on an error that is not a retry, call by
    call, setting aside the ones that fail on their own."""

    try:
        with transaction.atomic():
            if source is None:
                raise LookupError("the call's source no longer exists")
            _ingest(source, [event_from_payload(json.loads(row[2])) for row in rows])
        return
    except Exception as exc:
        if _not_the_calls_fault(exc):
            raise
        if len(rows) == 1:
            _set_aside(source, rows[0], exc)
            return
    for row in rows:
        try:
            with transaction.atomic():
                if source is None:
                    raise LookupError("the call's source no longer exists")
                _ingest(source, [event_from_payload(json.loads(row[2]))])
        except Exception as exc:
            if _not_the_calls_fault(exc):
                raise
            _set_aside(source, row, exc)


def _set_aside(source: Source | None, row, exc: Exception) -> None:

    error = f"{type(exc).__name__}: {exc}"[:2000]
    logger.warning("stitch: call %s set aside: %s", row[0], error)
    logger.debug("%s", "".join(traceback.format_exception(exc)))
    try:
        payload = json.loads(row[2])
    except ValueError:
        payload = {"raw": row[2]}
    if source is None:
        return  # the source was deleted: its calls go with it
    IntakePoison.objects.create(
        source=source,
        message_id=row[4],
        payload=payload,
        received_at=row[3],
        error=error,
    )
