"""cdp.db's binary cursor: its list dumper sends exactly psycopg's bytes, and values survive the
round trip through PostgreSQL; ``uuid_texts``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from django.db import connection
from psycopg.adapt import PyFormat, Transformer

from cdp.db import binary_cursor, uuid_texts

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 6, 30, 15, 123456, tzinfo=UTC)
LISTS = [
    ["a", "", "é€😀", "x" * 300, 'with "quotes", {braces} and \\ backslash'],
    ["nul \x00 inside", "b"],  # psycopg's own dump (PostgreSQL refuses it anyway)
    ["a", None],
    [None, None],
    [],
    [uuid.uuid4() for _ in range(50)],
    [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)],
    [uuid.uuid4(), None],
    [str(uuid.uuid4()) for _ in range(3)],
    [1, 2, 3],
    [1, -(2**15)],
    [2**31, 5],
    [2**63 - 1, -(2**63)],
    [2**64],
    list(range(-40_000, 40_000, 7)),
    [True, False],
    [1.5, 2.0],
    [[1, 2], [3, 4]],
    [["a"], ["b"]],
    [NOW, NOW + timedelta(days=3650, microseconds=1), datetime(1970, 1, 1, tzinfo=UTC)],
    [datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))), NOW],
    [NOW, None],
    [NOW.replace(tzinfo=None)],
]


def _dumped(cursor, values):
    transformer = Transformer(cursor)
    try:
        dumper = transformer.get_dumper(values, PyFormat.BINARY)
        return dumper.oid, bytes(dumper.dump(values))
    except Exception as exc:  # the same refusal both ways
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("values", LISTS, ids=range(len(LISTS)))
def test_lists_are_sent_as_psycopg_sends_them(values):
    with binary_cursor() as ours:
        plain = psycopg.Cursor(connection.connection)
        assert _dumped(ours, values) == _dumped(plain, values)


def test_a_value_psycopg_cannot_encode_is_refused_the_same_way():
    with binary_cursor() as ours:
        plain = psycopg.Cursor(connection.connection)
        assert _dumped(ours, ["a\udc80"])[0] == _dumped(plain, ["a\udc80"])[0] == "UnicodeEncodeError"


def test_values_round_trip():
    ids = [uuid.uuid4() for _ in range(200)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    texts = ["a", "", "é€😀", "x" * 300]
    with binary_cursor() as cursor:
        cursor.execute("SELECT %b::uuid[], %b::text[], %b::bigint[]", [ids, texts, [1, 2**40]])
        assert cursor.fetchone() == (ids, texts, [1, 2**40])


def test_percent_s_lists_stay_text():
    with binary_cursor() as cursor:
        cursor.execute("SELECT %s::int[], %s::text[]", [[1, 2], ["a", "b"]])
        assert cursor.fetchone() == ([1, 2], ["a", "b"])


def test_uuid_texts_are_str_of_each_id():
    ids = [uuid.uuid4() for _ in range(1000)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), "already-text"]
    assert uuid_texts(ids) == [str(i) for i in ids]
    assert sorted(uuid_texts(set(ids[:5]))) == sorted(str(i) for i in ids[:5])
    assert uuid_texts([]) == []
