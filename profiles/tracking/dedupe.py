"""Stage 2, dedupe: an event is stored once per source and ``messageId``.

A batch skips events it already has (one query) and repeats within itself before any identity
work; a single call relies on the INSERT's ON CONFLICT (one statement less on the hottest path).
"""

from __future__ import annotations

from django.db import connection

from profiles.models import Source

from .validate import CleanEvent


def known_message_ids(source: Source, message_ids: list[str]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT message_id FROM profiles_event WHERE source_id = %s AND message_id = ANY(%s::text[])",
            [source.pk, message_ids],
        )
        return {row[0] for row in cursor.fetchall()}


def fresh_indexes(source: Source, events: list[CleanEvent]) -> tuple[list[int], int]:
    """(indexes of events not stored yet and not repeated earlier in the batch, duplicates)."""
    known = known_message_ids(source, [e.message_id for e in events]) if len(events) > 1 else set()
    fresh: list[int] = []
    seen_ids: set[str] = set()
    for index, event in enumerate(events):
        if event.message_id in known or event.message_id in seen_ids:
            continue
        seen_ids.add(event.message_id)
        fresh.append(index)
    return fresh, len(events) - len(fresh)
