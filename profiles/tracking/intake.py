"""Accept: validated calls are written to the durable intake log and committed before the answer.

The tracking API's path (docs/decisions/0039-intake-log.md):

1. ``validate`` (in the view): each call's shape;
2. ``dedupe``: repeats within the request are skipped here; calls stored before (intake or
   events, same source and ``messageId``) are skipped by the INSERT itself;
3. ``filters``: the identifier filters (suppressed or erased people) drop calls before anything
   is written, inside the INSERT when each has a ``hooks.SqlGuard`` (consent's does), else in
   Python first; the profile filters (analytics denied) run when the call is stitched, before any
   identity or trait work;
4. one ``INSERT … SELECT FROM unnest(arrays) … ON CONFLICT DO NOTHING`` into ``profiles_intakeevent``
   (parameters bound by the server; each call's JSON serialised once, by orjson, stored as text),
   its own transaction, committed before the 200 (accepted means stored and never lost; 0053);
5. on commit, the stitch workers are woken (``intake_wake``): a Celery task on the ``intake`` queue.

No identity work happens here: ``profiles.tracking.worker`` stitches the log in bulk behind it.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache, partial

import orjson
from django.conf import settings
from django.db import connection, transaction
from psycopg import sql as psycopg_sql

from cdp.db import binary_cursor
from profiles import hooks
from profiles.models import Source
from profiles.normalize import normalize_id

from . import filters
from .parse import event_identifiers
from .validate import CleanEvent

logger = logging.getLogger("cdp.ingest")

WAKE_KEY = "cdp:intake:wake"

_TIME_FIELDS = ("occurred_at", "original_timestamp", "sent_at", "received_at")


@dataclass
class AcceptResult:
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0  # refused by an identifier filter (suppressed or erased person)
    partitions: set = field(default_factory=set)


def partition_of(event: CleanEvent) -> int:
    """The intake partition of a call: a stable hash of its anonymous id (the browser), else its
    user id, else its message id. A person's calls from one browser share a partition."""
    key = event.anonymous_id or event.user_id or event.message_id
    return zlib.crc32(key.encode()) % settings.CDP_INTAKE_PARTITIONS


def event_payload(event: CleanEvent) -> str:
    """The call as the intake log keeps it (JSON text; times as ISO 8601), serialised once by orjson.

    orjson writes aware datetimes as ``datetime.isoformat()`` does, so ``event_from_payload`` reads
    both this and what earlier versions wrote. Integers beyond 64 bits (the strict parser lets
    integers of up to 30 digits through) are written by the standard library instead."""
    data = {
        "type": event.type,
        "message_id": event.message_id,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "name": event.name,
        "properties": event.properties,
        "traits": event.traits,
        "context": event.context,
        "device_type": event.device_type,
        "local_hour": event.local_hour,
        "previous_id": event.previous_id,
        "group_id": event.group_id,
        "occurred_at": event.occurred_at,
        "original_timestamp": event.original_timestamp,
        "sent_at": event.sent_at,
        "received_at": event.received_at,
    }
    try:
        return orjson.dumps(data).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer wider than 64 bits
        for name in _TIME_FIELDS:
            value = data[name]
            data[name] = value.isoformat() if value is not None else None
        return json.dumps(data, separators=(",", ":"))


# what ``event_payload`` writes: every field of ``CleanEvent`` but the identifiers (found at ingestion)
_PAYLOAD_FIELDS = frozenset(f.name for f in fields(CleanEvent)) - {"identifiers"}


def event_from_payload(data: dict) -> CleanEvent:
    """The ``CleanEvent`` an intake row was made from (``event_payload`` read back).

    A payload with exactly the fields ``event_payload`` writes becomes the event's attributes as
    they are (``CleanEvent.__init__`` only assigns them, and its seventeen keyword arguments were
    two thirds of this function's time, ~2 µs per stitched call); any other payload (an older or
    unknown shape) goes through ``CleanEvent(**…)``, which fills defaults and refuses unknown fields."""
    values = dict(data)
    for name in _TIME_FIELDS:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    if values.keys() != _PAYLOAD_FIELDS:
        return CleanEvent(**values)
    values["identifiers"] = []
    event = object.__new__(CleanEvent)
    event.__dict__ = values
    return event


# One statement per request, parameters bound by the server in binary (psycopg quoting 100 calls'
# JSON into the SQL text in Python was a third of the request). A call stored before (waiting here
# or already stitched into the events table) is a duplicate: NOT EXISTS and ON CONFLICT skip it.
_INTAKE_INSERT = (
    "INSERT INTO profiles_intakeevent (source_id, message_id, partition, payload, received_at, user_id, anonymous_id) "
    "SELECT %b, u.mid, u.part, u.p, %b, u.uid, u.aid "
    "FROM unnest(%b::text[], %b::smallint[], %b::text[], %b::text[], %b::text[]) AS u(mid, part, p, uid, aid) "
    "WHERE NOT EXISTS (SELECT 1 FROM profiles_event e WHERE e.source_id = %b AND e.message_id = u.mid) "
    "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING partition"
)

# The same INSERT with the identifier filters' decisions made in it (``hooks.SqlGuard``: consent's
# suppression list), so a request is one statement, not a look-up and an insert (decision 0053). Each
# guard gets its keys and, per key, the position of its call (1-based, as WITH ORDINALITY counts);
# a call with a key in the guard's table is dropped. Rows answer (partition, false) per stored call
# and (NULL, true) per dropped one.
_GUARDED_INSERT = (
    "WITH blocked AS ({blocked}), "
    "stored AS ("
    "INSERT INTO profiles_intakeevent (source_id, message_id, partition, payload, received_at, user_id, anonymous_id) "
    "SELECT %b, u.mid, u.part, u.p, %b, u.uid, u.aid "
    "FROM unnest(%b::text[], %b::smallint[], %b::text[], %b::text[], %b::text[]) "
    "WITH ORDINALITY AS u(mid, part, p, uid, aid, n) "
    "WHERE NOT EXISTS (SELECT 1 FROM blocked b WHERE b.n = u.n) "
    "AND NOT EXISTS (SELECT 1 FROM profiles_event e WHERE e.source_id = %b AND e.message_id = u.mid) "
    "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING partition) "
    "SELECT partition, false FROM stored UNION ALL SELECT NULL, true FROM blocked"
)
_GUARD_BLOCKED = (
    "SELECT DISTINCT k.n FROM unnest(%b::text[], %b::bigint[]) AS k(key, n) "
    "WHERE EXISTS (SELECT 1 FROM {table} g WHERE g.{column} = k.key)"
)


@lru_cache(maxsize=8)
def _guarded_insert(guards: tuple[hooks.SqlGuard, ...]) -> str:
    blocked = " UNION ".join(
        _GUARD_BLOCKED.format(table=_identifier(g.table), column=_identifier(g.column)) for g in guards
    )
    return _GUARDED_INSERT.format(blocked=blocked)


def _identifier(name: str) -> str:
    return psycopg_sql.Identifier(name).as_string(None)


def events_accept(
    *, source: Source, events: list[CleanEvent], wake: Callable[[Callable[[], None]], None] | None = None
) -> AcceptResult:
    """Write the calls to the intake log in one statement and commit; wake the stitch workers.

    ``wake`` is handed ``intake_wake`` once the calls are committed, to run it later (by default it
    runs on commit); the tracking API runs it after its response is sent (the Redis round trips of the wake are not part
    of the call's latency; a wake lost with the process is the beat sweep's, as with Redis down).
    """
    result = AcceptResult()
    fresh: list[int] = []
    seen: set[str] = set()
    for index, event in enumerate(events):
        if event.message_id in seen:
            result.duplicates += 1
            continue
        seen.add(event.message_id)
        fresh.append(index)
    guards: tuple[hooks.SqlGuard, ...] | None = ()
    if fresh and filters.has_identifier_filters():
        for index in fresh:
            events[index].identifiers = event_identifiers(events[index])
        guards = filters.identifier_sql_guards()
        if guards is None:  # a filter only Python can apply: look up first, then insert
            kept = filters.identifiers_filter(events, fresh)
            result.dropped = len(fresh) - len(kept)
            fresh = kept
    if not fresh:
        return result
    mids, parts, payloads, uids, aids = [], [], [], [], []
    partitions = settings.CDP_INTAKE_PARTITIONS
    for index in fresh:
        event = events[index]
        mids.append(event.message_id)
        key = event.anonymous_id or event.user_id or event.message_id
        parts.append(zlib.crc32(key.encode()) % partitions)
        payloads.append(event_payload(event))
        uids.append(normalize_id(event.user_id) or "" if event.user_id else "")
        aids.append(normalize_id(event.anonymous_id) or "" if event.anonymous_id else "")
    params = [source.pk, events[fresh[0]].received_at, mids, parts, payloads, uids, aids, source.pk]
    if guards:
        guard_params = []
        for guard in guards:
            keys, owners = [], []
            for position, index in enumerate(fresh, start=1):
                found = guard.keys(events[index])
                keys += found
                owners += [position] * len(found)
            guard_params += [keys, owners]
        sql, params = _guarded_insert(guards), [*guard_params, *params]
    else:
        sql = _INTAKE_INSERT
    # One statement, so no BEGIN and COMMIT of our own (two round trips of four per request): outside
    # a transaction it is its own, committed (WAL flushed) before PostgreSQL answers; inside a
    # caller's transaction it commits with it, and the wake waits for that commit.
    with binary_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    stored = [row[0] for row in rows if not (guards and row[1])]
    result.dropped += len(rows) - len(stored)
    result.partitions = set(stored)
    if stored:
        transaction.on_commit(intake_wake if wake is None else partial(wake, intake_wake))
    result.accepted = len(stored)
    result.duplicates += len(fresh) - len(rows)
    return result


def intake_wake() -> None:
    """Ask the stitch workers to drain the log; never fails or slows the accept path.

    At most one wake now and one a second later per second across web processes (the workers
    drain until the log is empty, so a call that arrives while they run is taken by the running
    drain or by the delayed wake). With Redis gone this fails fast and the minute sweep drains.
    """
    from cdp.queueing import task_send_throttled
    from profiles.tasks import intake_stitch

    # a running drain lingers while calls keep coming (decision 0046), so a web worker that found a
    # wake running and one due need not ask again for 0.5 s (decision 0063: a delayed wake still runs within
    # a second, and a drain lingers 5 s)
    task_send_throttled(
        intake_stitch, key=WAKE_KEY, copies=settings.CDP_INTAKE_WORKERS, what="the stitch workers", quiet=0.5
    )


def intake_poison_send_back(*, poison_ids: list[int]) -> int:
    """Put calls set aside back into the intake log (after the cause was fixed); returns how many."""
    from profiles.models import IntakePoison

    sent = 0
    with transaction.atomic():
        for poison in IntakePoison.objects.select_for_update().filter(pk__in=poison_ids).order_by("pk"):
            payload = poison.payload if isinstance(poison.payload, dict) else {}
            key = str(payload.get("anonymous_id") or payload.get("user_id") or poison.message_id)
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO profiles_intakeevent (source_id, message_id, partition, payload, received_at, "
                    "user_id, anonymous_id) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (source_id, message_id) DO NOTHING",
                    [
                        poison.source_id,
                        poison.message_id,
                        zlib.crc32(key.encode()) % settings.CDP_INTAKE_PARTITIONS,
                        json.dumps(poison.payload),
                        poison.received_at,
                        str(payload.get("user_id") or "")[:255],
                        str(payload.get("anonymous_id") or "")[:255],
                    ],
                )
                sent += cursor.rowcount
            poison.delete()
        transaction.on_commit(intake_wake)
    return sent
