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
4. delete the rows taken, note the partition's progress, commit. Calls that need a lock another
   transaction holds (the other worker's batch, an erasure) are not waited for: they stay in the
   log for a later batch (decision 0069).

A worker killed at any point loses nothing (the rows are deleted in the transaction that stores
their events) and doubles nothing (the events table is unique per source and ``messageId``).
Deadlocks and serialisation failures retry the whole batch. Any other error of a source's group
is narrowed down call by call: a call that fails on its own is set aside as ``IntakePoison`` with
its error and the rest go on.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import time
import traceback
from collections import Counter
from contextlib import contextmanager

import orjson
from django.conf import settings
from django.db import DatabaseError, InterfaceError, InternalError, OperationalError, connection, transaction
from django.utils import timezone

from cdp.db import binary_cursor
from profiles.identity.merge import ProfileVanished, merge_hooks_batched
from profiles.models import IntakeEvent, IntakePoison, Source

from .ingest import RETRYABLE, _ingest, retry_counts
from .intake import event_from_payload
from .stitch import AllContended, Deferral

logger = logging.getLogger("cdp.ingest")

MAX_ATTEMPTS = 6

_TAKE_SQL = (
    "SELECT p.number FROM profiles_intakepartition p "
    "WHERE p.number <> ALL(%b::smallint[]) "
    "AND EXISTS (SELECT 1 FROM profiles_intakeevent i WHERE i.partition = p.number) "
    "ORDER BY p.stitched_at NULLS FIRST, p.number LIMIT %b FOR UPDATE OF p SKIP LOCKED"
)
# the partition numbers present in the log are found by a walk of its (partition, id) index, one step
# per distinct number (a loose index scan): an idle worker runs this on every look that finds nothing,
# and ``SELECT DISTINCT`` read the whole log, dead rows included (20 ms per look after a burst of
# 50,000 calls, against 1.6 ms)
_ENSURE_SQL = (
    "WITH RECURSIVE present(n) AS ("
    "(SELECT i.partition FROM profiles_intakeevent i ORDER BY i.partition LIMIT 1) "
    "UNION ALL SELECT (SELECT i.partition FROM profiles_intakeevent i WHERE i.partition > p.n "
    "ORDER BY i.partition LIMIT 1) FROM present p WHERE p.n IS NOT NULL) "
    "INSERT INTO profiles_intakepartition (number, stitched_total) "
    "SELECT g, 0 FROM generate_series(0, %s - 1) AS g "
    "UNION SELECT n, 0 FROM present WHERE n IS NOT NULL "
    "ON CONFLICT (number) DO NOTHING RETURNING number"
)
# the oldest calls of the partitions taken, each with whether its event is stored already (a call
# accepted again in the moment its first copy was being stitched): one statement, no second lookup.
# The batch's ids are chosen first (with each row's place in the table, ``ctid``), then each call is
# read from its place (decision 0067). With the log's statistics current PostgreSQL walks the
# primary key in id order and stops at the batch; on a log filled since its last ANALYZE (one
# analyzed while nearly empty, then a burst) it reads every waiting call of the held partitions
# instead, and choosing whole rows it carried all their payloads into a sort (decision 0064):
# 11-20 µs per call on a 20,000-call log, 5-8 choosing ids. ``OFFSET 0`` keeps the stored-before
# check one look-up in the events table's unique index per call: without it PostgreSQL hashes the
# whole index for every batch while the events table is small enough to look cheap to it.
_READ_SQL = (
    "SELECT i.id, i.source_id, i.payload, i.message_id, i.partition, "
    "EXISTS (SELECT 1 FROM profiles_event e WHERE e.source_id = i.source_id AND e.message_id = i.message_id "
    "OFFSET 0) "
    "FROM (SELECT ctid AS place, id FROM profiles_intakeevent WHERE partition = ANY(%b::smallint[]) "
    "ORDER BY id LIMIT %b) AS b "
    "CROSS JOIN LATERAL (SELECT r.id, r.source_id, r.payload, r.message_id, r.partition FROM profiles_intakeevent r "
    "WHERE r.ctid = b.place OFFSET 0) AS i ORDER BY b.id"
)
_DONE_SQL = (
    "UPDATE profiles_intakepartition p SET stitched_at = now(), stitched_total = p.stitched_total + v.n "
    "FROM unnest(%b::smallint[], %b::bigint[]) AS v(number, n) WHERE p.number = v.number"
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
    """Stitch one batch of free partitions; None when no partition with rows is free. Returns the
    calls taken out of the log (calls left for a later batch, decision 0069, are not counted)."""
    taken = _stitch_one(skip=())
    return taken[2] if taken else None


def partitions_per_batch() -> int:
    """How many partitions one batch takes: its share of them among the stitch workers, so that at
    low rates a wake costs each worker one transaction (not one per partition) while at high rates
    every worker still finds partitions of its own."""
    return max(1, settings.CDP_INTAKE_PARTITIONS // max(1, settings.CDP_INTAKE_WORKERS))


def intake_drain(*, max_batches: int = 100_000, linger: float = 0.0, max_seconds: float = 600.0) -> int:
    """Stitch batches until no partition with rows is free; returns the calls taken.

    Partitions whose batch was not full are not taken again in the same pass: under a steady
    trickle of calls a drain would otherwise loop on batches of a few calls. Without ``linger`` the
    drain takes the other free partitions and then ends, and calls that arrive later are taken by
    the task their own accept queued (at most a second later, ``intake_wake``). With ``linger`` (the
    Celery task's ``CDP_INTAKE_LINGER_SECONDS``) a drain that stitched something keeps watching the
    log: after a batch that was not full, or when nothing is free, it waits
    ``CDP_INTAKE_PAUSE_SECONDS`` (the batch fills meanwhile) and looks again, until the log has given
    it nothing for ``linger`` seconds. A drain that finds nothing at its start ends at once, so wakes
    queued while the workers were busy cost a look each. Past ``max_seconds`` a drain ends (the wakes
    of the calls still coming start a fresh task), well within Celery's time limits."""
    _freeze_long_lived()
    total = 0
    passed: list[int] = []
    started = last_rows = time.monotonic()
    for _ in range(max_batches):
        taken = _stitch_one(skip=passed)
        if taken is None:
            now = time.monotonic()
            if not linger or not total or now - last_rows > linger or now - started > max_seconds:
                break
            passed.clear()
            time.sleep(settings.CDP_INTAKE_PAUSE_SECONDS)
            continue
        partitions, read, done = taken
        total += done
        last_rows = time.monotonic()
        if read < settings.CDP_INTAKE_BATCH:
            if (linger and last_rows - started <= max_seconds) or done < read:
                # a trickle: the next batch fills during the pause instead of this worker chasing the
                # other workers' partitions with batches of a few calls (a batch costs ~16 ms of CPU
                # whatever its size; two lingering workers made ~20 of them a second at 200 calls/s).
                # Calls left for another transaction's locks (decision 0069) are looked at again after
                # the pause, their partitions not passed, lingering or not: once they are all that is
                # left, the batch waits for the locks
                time.sleep(settings.CDP_INTAKE_PAUSE_SECONDS)
            else:
                passed.extend(partitions)
    return total


_frozen = False


def _freeze_long_lived() -> None:
    """Once per process, before its first drain: the objects alive now (modules, Django's and the
    apps' state, the connection) are moved out of the cyclic garbage collector's reach
    (``gc.freeze``). A batch makes some 200,000 short-lived objects (decoded calls, rows), which
    start hundreds of collections per 20,000 calls, and every older-generation collection also walked
    these ~170,000 objects that never become garbage: 17 µs of a stitched call's ~100 µs of Python,
    4 µs after the freeze. What the batches make is collected as before; an object frozen here is
    still freed when nothing refers to it (only a cycle among frozen objects would stay)."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


def _stitch_one(*, skip) -> tuple[list[int], int, int] | None:
    """(partitions, calls read, calls taken out of the log) of one batch of free partitions not in
    ``skip``, or None. A batch does not wait for profile or identifier locks another transaction
    holds (the other stitch worker's batch, an erasure): the calls that need them stay in the log for
    a later batch (decision 0069); if no call can be taken, the batch is taken again waiting for them."""
    ensured = False
    wait = False  # set once, after a batch whose every call waited for another transaction's locks
    attempt = 1
    while True:
        try:
            with transaction.atomic(durable=True):
                taken = _take_partitions(skip)
                if taken:
                    return taken, *_stitch_partitions(taken, defer=not wait)
            # nothing free: on first use the partition rows are made (committed on their own, so
            # no other worker waits for a batch's transaction to see them), then one more look
            if ensured or not _ensure_partitions():
                return None
            ensured = True
        except AllContended:
            wait = True
            retry_counts["AllContended"] += 1
        except (DatabaseError, ProfileVanished) as exc:
            if attempt == MAX_ATTEMPTS or not _retryable(exc):
                raise
            retry_counts[type(exc.__cause__ or exc).__name__] += 1
            logger.info("stitch: retrying the batch after %s (attempt %d)", type(exc).__name__, attempt)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
            attempt += 1


def _take_partitions(skip) -> list[int]:
    lease_ms = int(settings.CDP_INTAKE_LEASE_SECONDS * 1000)
    with binary_cursor() as cursor:
        cursor.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %b, true), "
            "set_config('statement_timeout', %b, true)",
            [str(lease_ms), str(lease_ms)],
        )
        cursor.execute(_TAKE_SQL, [sorted(skip), partitions_per_batch()])
        return [row[0] for row in cursor.fetchall()]


def _ensure_partitions() -> bool:
    """Partition rows for every partition number in use (the configured count, and any rows left
    from an earlier count); True when some were missing."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_ENSURE_SQL, [settings.CDP_INTAKE_PARTITIONS])
        return bool(cursor.fetchall())


def _stitch_partitions(partitions: list[int], *, defer: bool = False) -> tuple[int, int]:
    """The oldest ``CDP_INTAKE_BATCH`` calls of the partitions held (per partition, a prefix in id
    order), stitched per source; then the calls deleted and the partitions' progress noted. With
    ``defer``, calls left for another transaction's locks stay in the log, with the later calls of
    the same person (``stitch.Deferral``): the oldest of their partitions for the next batch.
    Returns (calls read, calls taken out of the log)."""
    with binary_cursor() as cursor:
        cursor.execute(_READ_SQL, [partitions, settings.CDP_INTAKE_BATCH])
        rows = cursor.fetchall()
    if not rows:
        return 0, 0
    groups: dict[int, list] = {}
    for row in rows:
        if not row[5]:  # stored before: a duplicate, nothing to do but leave the log
            groups.setdefault(row[1], []).append(row)
    sources = Source.objects.in_bulk(list(groups))
    deferral = Deferral() if defer else None  # what one group leaves out holds back the next groups' calls
    left: set[int] = set()
    for source_id, group in groups.items():
        left.update(_stitch_group(sources.get(source_id), group, deferral=deferral))
    done = [row for row in rows if row[0] not in left] if left else rows
    if not done:
        raise AllContended(f"every call of the batch needs a lock another transaction holds ({len(rows)})")
    if left:
        retry_counts["left for later"] += len(left)  # calls, not batches (about 1 % of them under load)
    counts = Counter(row[4] for row in done)
    with binary_cursor() as cursor:
        cursor.execute("DELETE FROM profiles_intakeevent WHERE id = ANY(%b::bigint[])", [[row[0] for row in done]])
        cursor.execute(_DONE_SQL, [list(counts), list(counts.values())])
    return len(rows), len(done)


def _decoded(rows: list) -> tuple[list, list[int] | None]:
    """(the calls of ``rows``, their intake ids for the events INSERT to read the calls from the log
    in SQL), or (the calls, None) when a call is JSON only the standard library reads (NaN,
    Infinity, integers beyond 64 bits: PostgreSQL's jsonb refuses some of them, so these calls'
    events are written from Python, as orjson writes them)."""
    events, plain = [], True
    for row in rows:
        try:
            data = orjson.loads(row[2])
        except orjson.JSONDecodeError:
            data, plain = json.loads(row[2]), False
        events.append(event_from_payload(data))
    return events, [row[0] for row in rows] if plain else None


@contextmanager
def _savepoint(deferral: Deferral | None):
    """A savepoint; when it rolls back, the batch's deferral forgets the locks taken in it and what it
    left out (``Deferral.rolled_back``), so later calls neither count them as held nor wait behind them."""
    before = deferral.mark() if deferral is not None else None
    try:
        with transaction.atomic():
            yield
    except Exception:
        if deferral is not None:
            deferral.rolled_back(before)
        raise


def _stitch_group(source: Source | None, rows: list, *, deferral: Deferral | None = None) -> list[int]:
    """One source's calls of the batch, in a savepoint; on an error that is not a retry, call by
    call, setting aside the ones that fail on their own. Returns the intake ids of the calls left in
    the log for another transaction's locks (``deferral``)."""
    try:
        with _savepoint(deferral):
            if source is None:
                raise LookupError("the call's source no longer exists")
            with merge_hooks_batched():
                events, intake_ids = _decoded(rows)
                result = _ingest(source, events, stored_checked=True, intake_ids=intake_ids, deferral=deferral)
        return [rows[i][0] for i in result.deferred]
    except Exception as exc:
        if _not_the_calls_fault(exc):
            raise
        if len(rows) == 1:
            _set_aside(source, rows[0], exc)
            return []
    # one by one, with the batch's deferral: a call that needs a lock another transaction holds is
    # left for a later batch as in the group, not waited for while the batch holds the profiles of
    # the earlier groups (some may be above it: waiting would break the one lock order)
    left = []
    for row in rows:
        try:
            with _savepoint(deferral):
                if source is None:
                    raise LookupError("the call's source no longer exists")
                events, intake_ids = _decoded([row])
                result = _ingest(source, events, stored_checked=True, intake_ids=intake_ids, deferral=deferral)
            if result.deferred:
                left.append(row[0])
        except Exception as exc:
            if _not_the_calls_fault(exc):
                raise
            _set_aside(source, row, exc)
    return left


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
    received_at = IntakeEvent.objects.filter(pk=row[0]).values_list("received_at", flat=True).first()
    IntakePoison.objects.create(
        source=source,
        message_id=row[3],
        payload=payload,
        received_at=received_at or timezone.now(),
        error=error,
    )
