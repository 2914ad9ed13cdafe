"""Stage 5, store: events go into the events table on their profiles, one statement per batch."""

from __future__ import annotations

import json

from django.db import connection

from profiles.models import Source

from .followup import events_stored
from .validate import CleanEvent

_EVENT_INSERT = (
    "INSERT INTO profiles_event (source_id, message_id, profile_id, type, name, user_id, anonymous_id, "
    "properties, traits, context, occurred_at, original_timestamp, sent_at, received_at, device_type, local_hour) "
    "SELECT %s, e.mid, e.pid, e.t, e.n, e.u, e.a, e.p::jsonb, e.tr::jsonb, e.c::jsonb, e.o, e.ot, e.s, e.r, e.d, e.h "
    "FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::text[], "
    "%s::smallint[]) AS e(mid, pid, t, n, u, a, p, tr, c, o, ot, s, r, d, h) "
    "ON CONFLICT (source_id, message_id) DO NOTHING RETURNING message_id"
)


def events_insert(source: Source, rows: list[tuple[CleanEvent, object]]) -> int:
    """All events of the batch in one INSERT from arrays (several times faster than bulk_create);
    returns how many were inserted (the rest were stored before: same source and messageId).

    Tells ``followup.events_stored`` about the events actually inserted.
    """
    dumps = json.dumps
    columns: list[list] = [[] for _ in range(15)]
    for e, pid in rows:
        for column, value in zip(
            columns,
            (
                e.message_id,
                str(pid),
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
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_INSERT, [source.pk, *columns])
        inserted = {row[0] for row in cursor.fetchall()}
    events_stored(rows, inserted)
    return len(inserted)
