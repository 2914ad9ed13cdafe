"""Database helpers shared by the apps."""

from __future__ import annotations

import struct
from itertools import chain, repeat

import orjson
import psycopg
from django.db import connection
from psycopg import postgres
from psycopg.types.array import ListBinaryDumper, ListDumper


def binary_cursor(*, binary_results: bool = False):
    """A cursor on Django's connection whose parameters are bound by the server in binary (``%b``
    placeholders; ``%s`` stays text): for statements that carry large arrays, which Django's
    cursors quote into the SQL text in Python (for 100 calls' JSON, a third of a tracking request;
    decisions 0044 and 0046). Same transaction, database-error wrapping, execute wrappers and query
    log as Django's own cursors, so query budgets still count its statements.

    Lists of text, uuids and integers are written by ``_ArrayBinaryDumper`` (the same bytes as
    psycopg's, without its loop in Python per element; decision 0066).

    ``binary_results``: rows come back in binary too (psycopg's own loaders: timestamps read by
    Django's text loader in Python cost about 3 µs each; jsonb comes back parsed, not as text)."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = psycopg.Cursor(connection.connection)
        # binary lists only: ``%s`` lists stay psycopg's text dumper (the one registered last
        # answers ``%s``, as psycopg's own defaults do)
        cursor.adapters.register_dumper(list, _ArrayBinaryDumper)
        cursor.adapters.register_dumper(list, ListDumper)
        if binary_results:
            cursor.format = psycopg.pq.Format.BINARY
        return connection._prepare_cursor(cursor)


_TEXT_OIDS = frozenset(postgres.types[name].oid for name in ("text", "varchar"))
_INTEGERS = {postgres.types[name].oid: code for name, code in (("int2", "h"), ("int4", "i"), ("int8", "q"))}
_UUID_OID = postgres.types["uuid"].oid
_pack_length = struct.Struct("!i").pack
_UUID_LENGTH = _pack_length(16)


def _text_items(values: list) -> bytes | None:
    # PostgreSQL's text holds no NUL character: joined on it, the values are encoded and split
    # again in C (a value containing one gives more parts and is left to psycopg, which refuses it)
    parts = "\0".join(values).encode().split(b"\0")
    if len(parts) != len(values):
        return None
    return b"".join([_pack_length(len(part)) + part for part in parts])


def _uuid_items(values: list) -> bytes:
    out = bytearray()
    for value in values:
        out += _UUID_LENGTH
        out += value.int.to_bytes(16)
    return bytes(out)


def _integer_items(values: list, code: str) -> bytes:
    size = struct.calcsize(f"!{code}")
    return struct.pack(f"!{('i' + code) * len(values)}", *chain.from_iterable(zip(repeat(size), values)))


class _ArrayBinaryDumper(ListBinaryDumper):
    """psycopg's binary dumper of lists, with one-dimensional lists of text, uuids and integers
    without NULLs written in a few calls in C (or one tight loop for uuids):
    psycopg dumps every element through Python (its sub-dumper, the length, two appends; ~0.2 µs
    an element), and a stitched batch binds some hundred thousand (decision 0066). Anything else
    (NULLs, nested lists, other types, values psycopg would refuse) goes to psycopg's own ``dump``,
    so the bytes sent are always psycopg's."""

    def dump(self, obj: list):
        element = self.sub_dumper
        if obj and element is not None and not isinstance(obj[0], list):
            try:
                if element.oid in _TEXT_OIDS and self._tx.encoding == "utf-8":
                    items = _text_items(obj)
                elif element.oid == _UUID_OID:
                    items = _uuid_items(obj)
                elif element.oid in _INTEGERS:
                    items = _integer_items(obj, _INTEGERS[element.oid])
                else:
                    items = None
            except (TypeError, ValueError, AttributeError, OverflowError, struct.error):
                items = None  # a NULL, a value of another type: psycopg decides
            if items is not None:
                return struct.pack("!IIIii", 1, 0, element.oid, len(obj), 1) + items
        return super().dump(obj)


def uuid_texts(ids) -> list[str]:
    """``[str(i) for i in ids]`` for ``uuid.UUID``s (or strings already), through orjson in C: the
    same canonical text (lowercase, hyphenated), without ``UUID.__str__``'s formatting in Python
    (about 0.5 µs an id; a stitched batch turns every profile id into text a few times)."""
    return orjson.loads(orjson.dumps(ids if isinstance(ids, list) else list(ids)))
