"""Database helpers shared by the apps."""

from __future__ import annotations

import orjson
import psycopg
from django.db import connection


def binary_cursor(*, binary_results: bool = False):
    """A cursor on Django's connection whose parameters are bound by the server in binary (``%b``
    placeholders; ``%s`` stays text): for statements that carry large arrays, which Django's
    cursors quote into the SQL text in Python (for 100 calls' JSON, a third of a tracking request;
    decisions 0044 and 0046). Same transaction, database-error wrapping, execute wrappers and query
    log as Django's own cursors, so query budgets still count its statements.

    ``binary_results``: rows come back in binary too (psycopg's own loaders: timestamps read by
    Django's text loader in Python cost about 3 µs each; jsonb comes back parsed, not as text)."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = psycopg.Cursor(connection.connection)
        if binary_results:
            cursor.format = psycopg.pq.Format.BINARY
        return connection._prepare_cursor(cursor)


def uuid_texts(ids) -> list[str]:
    """``[str(i) for i in ids]`` for ``uuid.UUID``s (or strings already), through orjson in C: the
    same canonical text (lowercase, hyphenated), without ``UUID.__str__``'s formatting in Python
    (about 0.5 µs an id; a stitched batch turns each profile id into text for its results and hooks)."""
    return orjson.loads(orjson.dumps(ids if isinstance(ids, list) else list(ids)))
