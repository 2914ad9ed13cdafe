"""Stage 5, store: events go into the events table on their profiles, one statement per batch.

The stitch path sends its arrays through ``cdp.db.binary_cursor``: a batch's statements carry
thousands of values each, and Django's client-side binding quotes every one of them into the SQL
text in Python (a fifth of a stitch worker's time); bound on the server in binary they cost a few
percent.
"""

from __future__ import annotations

import json

import orjson

from cdp.db import binary_cursor
from profiles.models import Source

from .followup import events_stored
from .validate import CleanEvent

_EVENT_INSERT = (
    "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, "
    "properties, traits, context, occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour) "
    "SELECT %b, e.mid, e.pid, e.t, e.n, e.u, e.a, e.p::jsonb, e.tr::jsonb, e.c::jsonb, e.o, e.ot, e.s, e.r, e.d, e.h "
    "FROM unnest(%b::text[], %b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::text[], "
    "%b::smallint[]) AS e(mid, pid, t, n, u, a, p, tr, c, o, ot, s, r, d, h) "
    "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING message_id"
)


def _json(value) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (integers beyond 64 bits) the standard library writes
        return json.dumps(value)


def events_insert(source: Source, rows: list[tuple[CleanEvent, object]]) -> int:
    """All events of the batch in one INSERT from arrays (several times faster than bulk_create);
    returns how many were inserted (the rest were stored before: same source and messageId).

    Tells ``followup.events_stored`` about the events actually inserted.
    """
    dumps = _json
    columns: list[list] = [[] for _ in range(15)]
    for e, pid in rows:
        for column, value in zip(
            columns,
            (
                e.message_id,
                pid,
                e.type,
                e.name,
                e.user_id,
                e.anonymous_id,
                dumps(e.properties),
                dumps(e.traits),
                dumps(e.context),
                e.occurred_at,
                e.original_timestamp,
                e.sent_at,
                e.received_at,
                e.device_type,
                e.local_hour,
            ),
            strict=True,
        ):
            column.append(value)
    with binary_cursor() as cursor:
        cursor.execute(_EVENT_INSERT, [source.pk, *columns])
        inserted = {row[0] for row in cursor.fetchall()}
    events_stored(rows, inserted)
    return len(inserted)


# The stitch workers' events come from the intake log's rows, in SQL: each call's JSON is parsed by
# PostgreSQL once (it parsed the properties, traits and context texts before, too), and only the
# intake ids and profile ids cross the connection (was 15 arrays, three JSON texts per event
# serialised again in Python, the array values dumped one by one: about 10 % of a batch's Python).
# ``intake.event_payload`` wrote the call as ``CleanEvent``'s fields, times in ISO 8601. Each call is
# fetched by its primary key, and parsed once, in a ``LATERAL`` subquery that ``OFFSET 0`` keeps
# whole (inlined, ``payload::jsonb`` ran once per column: six times the time). Written as a join,
# PostgreSQL hashed the whole intake log, payloads and all, for every batch whenever the log was
# small enough to look cheap to it (a few tens of thousands of calls: 42 µs of PostgreSQL CPU per
# event against 23 by key, and growing with the backlog); by key it is one index look-up per call at
# any size of the log (decision 0067). The nested loop keeps the batch's order (the ordinality), so
# nothing is sorted.
_EVENT_FROM_INTAKE = (
    "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, "
    "properties, traits, context, occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour) "
    "SELECT c.s, c.m, v.pid, c.p->>'type', c.p->>'name', c.p->>'user_id', c.p->>'anonymous_id', "
    "c.p->'properties', c.p->'traits', c.p->'context', (c.p->>'occurred_at')::timestamptz, "
    "(c.p->>'original_timestamp')::timestamptz, (c.p->>'sent_at')::timestamptz, (c.p->>'received_at')::timestamptz, "
    "c.p->>'device_type', (c.p->>'local_hour')::smallint "
    "FROM unnest(%b::bigint[], %b::uuid[]) WITH ORDINALITY AS v(id, pid, n) CROSS JOIN LATERAL "
    "(SELECT i.source_id, i.message_id, i.payload::jsonb FROM profiles_intakeevent i WHERE i.id = v.id OFFSET 0) "
    "AS c(s, m, p) ORDER BY v.n ON CONFLICT (source_id, message_id) DO NOTHING RETURNING message_id"
)


def events_insert_from_intake(rows: list[tuple[CleanEvent, object]], intake_ids: list[int]) -> int:
    """``events_insert`` for calls still in the intake log (``intake_ids``, one per row): the same
    rows, read from the log by PostgreSQL instead of sent from Python."""
    with binary_cursor() as cursor:
        cursor.execute(_EVENT_FROM_INTAKE, [intake_ids, [pid for _, pid in rows]])
        inserted = {row[0] for row in cursor.fetchall()}
    events_stored(rows, inserted)
    return len(inserted)
