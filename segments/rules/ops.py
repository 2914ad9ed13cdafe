"""Operator semantics, written twice side by side: as SQL over a jsonb value and in Python.

Every predicate is total (never NULL in SQL): a missing value, JSON null, or a value of the wrong
type simply does not match (except ``!=`` and ``exists: false``, which match a missing value).
Numbers compare as exact decimals, text compares by code point (``COLLATE "C"``), ``contains`` on
text is case-insensitive, dates are ISO-8601 strings (UTC when no offset is given).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

COMPARE = ("<", "<=", ">", ">=")
EQUALITY = ("=", "!=", "in")
DATE_OPS = ("within_last", "before", "after")
PERCENT_OPS = ("top_percent", "bottom_percent")
VALUE_OPS = (*EQUALITY, *COMPARE, "contains", "exists", "between")  # valid on any JSON value
TRAIT_OPS = (*VALUE_OPS, *DATE_OPS, *PERCENT_OPS)  # traits and computed traits
FILTER_OPS = (*VALUE_OPS, *DATE_OPS)  # event property filters and context leaves

# The same shape check on both sides (month 01-12, day 01-31, hours 00-23, offsets up to 14:59).
ISO_DATE = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?)?"
    r"(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?$"
)
_ISO_DATE = re.compile(ISO_DATE)
_OFFSET = r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"

# created by migrations 0002/0003 (the SQL twin of parse_ts). Plain SQL, no exception block and no
# SET clause, so it is parallel safe: the shape check and a day-of-month check make the cast unable
# to fail; a value without offset is read as UTC whatever the session time zone.
TS_FUNCTION_SQL = "".join(
    [
        "CREATE OR REPLACE FUNCTION segments_jsonb_ts(v jsonb) RETURNS timestamptz ",
        "LANGUAGE sql STABLE PARALLEL SAFE AS $$ ",
        "SELECT CASE WHEN jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ '",
        ISO_DATE,
        "' THEN CASE WHEN substr(v #>> '{}', 9, 2)::int <= extract(day FROM make_date(",
        "substr(v #>> '{}', 1, 4)::int, substr(v #>> '{}', 6, 2)::int, 1) + interval '1 month' - interval '1 day') ",
        "THEN CASE WHEN (v #>> '{}') ~ '",
        _OFFSET,
        "' THEN (v #>> '{}')::timestamptz ELSE (v #>> '{}')::timestamp AT TIME ZONE 'UTC' END END END $$",
    ]
)


# --- Python side --------------------------------------------------------------------------------


def is_number(v) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def dec(v) -> Decimal:
    return v if isinstance(v, Decimal) else Decimal(str(v))


def parse_ts(v) -> datetime | None:
    """An ISO-8601 string as an aware datetime (UTC when naive); None for anything else."""
    if not isinstance(v, str) or not _ISO_DATE.match(v):
        return None
    text = v[:-1] + "+00:00" if v.endswith("Z") else v
    if re.search(r"[+-][0-9]{2}$", text[10:]):  # "+01" -> "+01:00"
        text += ":00"
    elif re.search(r"[+-][0-9]{4}$", text[10:]):  # "+0130" -> "+01:30"
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def json_equal(a, b) -> bool:
    """jsonb equality: numbers by value, everything else by type and value."""
    if is_number(a) and is_number(b):
        return dec(a) == dec(b)
    if is_number(a) or is_number(b) or isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def time_bound(value, now: datetime) -> datetime:
    """A before/after bound: an ISO date-time, or {"days_ago": N} / {"hours_ago": N} relative to now."""
    if isinstance(value, dict):
        return now - timedelta(days=float(value.get("days_ago", 0)), hours=float(value.get("hours_ago", 0)))
    return parse_ts(value)


def present(v) -> bool:
    return v is not None


def match_py(v, op: str, value, now: datetime) -> bool:
    """Does JSON value ``v`` (None when missing or JSON null) satisfy ``op value``?"""
    if op == "=":
        return v is not None and json_equal(v, value)
    if op == "!=":
        return not (v is not None and json_equal(v, value))
    if op == "in":
        return v is not None and any(json_equal(v, x) for x in value)
    if op == "exists":
        return present(v) == bool(value)
    if op in COMPARE or op == "between":
        if is_number(value) or op == "between":
            if not is_number(v):
                return False
            x = dec(v)
            if op == "between":
                return dec(value[0]) <= x <= dec(value[1])
            y = dec(value)
        else:
            if not isinstance(v, str):
                return False
            x, y = v.encode("utf-8"), value.encode("utf-8")  # code point order, as COLLATE "C"
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    if op == "contains":
        if isinstance(v, str) and isinstance(value, str):
            return value.lower() in v.lower()
        if isinstance(v, list):
            return any(json_equal(x, value) for x in v)
        return False
    if op in DATE_OPS:
        ts = parse_ts(v)
        if ts is None:
            return False
        if op == "within_last":
            return ts >= now - timedelta(days=float(value))
        bound = time_bound(value, now)
        return ts < bound if op == "before" else ts > bound
    raise ValueError(f"unknown operator {op!r}")


# --- SQL side -----------------------------------------------------------------------------------


def match_sql(j: str, j_params: list, op: str, value, now: datetime) -> tuple[str, list]:
    """SQL for ``j op value`` where ``j`` is SQL yielding jsonb (NULL when missing). Never NULL."""

    def rep(n: int) -> list:
        return j_params * n

    typeof = f"jsonb_typeof({j})"
    if op == "=":
        return f"COALESCE({j} = %s::jsonb, false)", [*rep(1), json.dumps(value)]
    if op == "!=":
        return f"NOT COALESCE({j} = %s::jsonb, false)", [*rep(1), json.dumps(value)]
    if op == "in":
        return f"COALESCE({j} = ANY(%s::jsonb[]), false)", [*rep(1), [json.dumps(x) for x in value]]
    if op == "exists":
        sql = f"COALESCE({typeof} <> 'null', false)"
        return (sql, rep(1)) if value else (f"NOT {sql}", rep(1))
    if op == "between":
        return (
            f"COALESCE(CASE WHEN {typeof} = 'number' THEN ({j} #>> '{{}}')::numeric BETWEEN %s AND %s END, false)",
            [*rep(2), dec(value[0]), dec(value[1])],
        )
    if op in COMPARE:
        if is_number(value):
            return (
                f"COALESCE(CASE WHEN {typeof} = 'number' THEN ({j} #>> '{{}}')::numeric {op} %s END, false)",
                [*rep(2), dec(value)],
            )
        return (
            f"COALESCE(CASE WHEN {typeof} = 'string' THEN ({j} #>> '{{}}') COLLATE \"C\" {op} %s COLLATE \"C\" END, "
            f"false)",
            [*rep(2), value],
        )
    if op == "contains":
        if isinstance(value, str):
            return (
                f"COALESCE(CASE {typeof} WHEN 'string' THEN strpos(lower({j} #>> '{{}}'), %s) > 0 "
                f"WHEN 'array' THEN {j} @> %s::jsonb END, false)",
                [*rep(2), value.lower(), *rep(1), json.dumps([value])],
            )
        return f"COALESCE({typeof} = 'array' AND {j} @> %s::jsonb, false)", [*rep(2), json.dumps([value])]
    if op in DATE_OPS:
        if op == "within_last":
            return f"COALESCE(segments_jsonb_ts({j}) >= %s, false)", [*rep(1), now - timedelta(days=float(value))]
        sign = "<" if op == "before" else ">"
        return f"COALESCE(segments_jsonb_ts({j}) {sign} %s, false)", [*rep(1), time_bound(value, now)]
    raise ValueError(f"unknown operator {op!r}")


def to_decimal(value) -> Decimal | None:
    try:
        return dec(value)
    except (InvalidOperation, ValueError):
        return None
