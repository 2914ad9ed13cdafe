"""Strict JSON for every API body: what PostgreSQL cannot store or Python cannot walk is a 400.

``json_loads_strict`` is the one JSON decoder of the API (the DRF parser below and the tracking
endpoints' ``read_json_body`` both use it). It refuses, as ``ParseError`` in the one error shape:

- nesting deeper than ``MAX_JSON_DEPTH`` (the C decoder would raise RecursionError at ~1,000);
- NUL (``\\u0000``) and lone surrogates (``\\ud800``) in any string or key: jsonb and UTF-8 cannot
  hold them;
- non-finite numbers (``NaN``, ``Infinity``, ``1e400``) and integers longer than ``MAX_INT_DIGITS``;
- bytes that are not UTF-8.

``gunzip_limited`` decompresses a gzip (or zlib) body in bounded steps and stops as soon as the
output passes the limit, so a small bomb never grows the worker.
"""

from __future__ import annotations

import json
import math
import re
import zlib

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 30
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def _constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range for a number")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def _check(value, depth: int = 1) -> None:
    """Walk the decoded value once: depth and characters (numbers were checked while decoding)."""
    if isinstance(value, str):
        if _BAD_CHARS.search(value):
            raise ValueError("text may not contain NUL (\\u0000) or unpaired surrogates (\\ud800-\\udfff)")
        return
    if isinstance(value, dict):
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nesting is deeper than {MAX_JSON_DEPTH} levels")
        for key, item in value.items():
            if _BAD_CHARS.search(key):
                raise ValueError("keys may not contain NUL (\\u0000) or unpaired surrogates (\\ud800-\\udfff)")
            if isinstance(item, (dict, list, str)):
                _check(item, depth + 1)
    elif isinstance(value, list):
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nesting is deeper than {MAX_JSON_DEPTH} levels")
        for item in value:
            if isinstance(item, (dict, list, str)):
                _check(item, depth + 1)


def json_loads_strict(body: bytes | str):
    """Decode one JSON document under the rules above; ``ParseError`` (400) for anything else."""
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
        _check(value)
    except RecursionError as exc:
        raise ParseError(f"Invalid JSON: nesting is deeper than {MAX_JSON_DEPTH} levels.") from exc
    except UnicodeDecodeError as exc:
        raise ParseError("Invalid JSON: the body is not UTF-8.") from exc
    except ValueError as exc:  # JSONDecodeError is a ValueError too
        raise ParseError(f"Invalid JSON: {exc}") from exc
    return value


def gunzip_limited(body: bytes, limit: int) -> bytes:
    """Decompress a gzip or zlib body, never producing more than ``limit`` + 1 bytes; ``BodyTooLarge``
    as soon as it would, ``ParseError`` when it is not valid compressed data."""
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    try:
        out = decoder.decompress(body, limit + 1)
        if len(out) > limit or decoder.unconsumed_tail:
            raise BodyTooLarge(len(out))
        out += decoder.flush(limit + 1 - len(out))
        if len(out) > limit:
            raise BodyTooLarge(len(out))
        if not decoder.eof:
            raise ParseError("Body is not valid gzip (truncated).")
    except zlib.error as exc:
        raise ParseError("Body is not valid gzip.") from exc
    return out


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with ``json_loads_strict``: the default parser of every DRF view."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", "utf-8")
        if stream is None:
            raise ParseError("Invalid JSON: empty body.")
        raw = stream.read()
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError("Invalid JSON: the body is not UTF-8.") from exc
        return json_loads_strict(text)
