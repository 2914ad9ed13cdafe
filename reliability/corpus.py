"""Hostile request bodies every endpoint must answer with a clean 4xx (tests and ``make reliability``)."""

from cdp.api.jsonbody import MAX_JSON_DEPTH

HOSTILE_BODIES = {
    "nested 10,000 deep": b"[" * 10_000 + b"]" * 10_000,
    "objects nested past the limit": (b'{"a":' * (MAX_JSON_DEPTH + 5)) + b"1" + b"}" * (MAX_JSON_DEPTH + 5),
    "NUL in a value": b'{"userId": "u1", "event": "a\\u0000b", "name": "x\\u0000", "properties": {"p": "\\u0000"}}',
    "NUL in a key": b'{"userId": "u1", "event": "e", "properties": {"a\\u0000": 1}}',
    "lone surrogate": b'{"userId": "u1", "event": "\\ud800", "name": "\\udfff"}',
    "1e400": b'{"userId": "u1", "event": "e", "properties": {"revenue": 1e400}, "price": 1e400}',
    "NaN": b'{"userId": "u1", "event": "e", "properties": {"revenue": NaN}, "price": NaN}',
    "Infinity": b'{"userId": "u1", "event": "e", "price": -Infinity}',
    "an integer of 5,000 digits": b'{"userId": "u1", "event": "e", "price": ' + b"9" * 5000 + b"}",
    "not UTF-8": b'{"userId": "\xff\xfe", "event": "e"}',
    "truncated": b'{"userId": "u1", "event": ',
}
