"""The API's JSON renderer: DRF's ``JSONRenderer``, encoding with orjson (decision 0059).

DRF encodes with the standard library's ``json`` and its ``JSONEncoder`` subclass: about 48 µs for a
recommendations answer (2.4 kB) on the benchmark machine, orjson about 3 µs for the same bytes. The
answer is the same document:

- compact separators and raw UTF-8 (DRF's ``COMPACT_JSON`` and ``UNICODE_JSON``, both on in cdp);
  U+2028 and U+2029 still escaped, as DRF does, so the output stays a JavaScript subset;
- dates, times, datetimes, dataclasses and every type orjson does not know (Decimal, lazy
  translations, QuerySets, numpy scalars, sets, bytes …) go through DRF's own ``JSONEncoder.default``,
  so they read exactly as before ("…Z" for UTC datetimes, not orjson's "+00:00");
- anything orjson refuses (an integer beyond 64 bits, a non-string dict key, a lone surrogate, a type
  DRF's encoder refuses too) is rendered by DRF's renderer, which answers or fails as it always did;
- an indented rendering (``Accept: application/json; indent=4``) or a non-default ``COMPACT_JSON`` /
  ``UNICODE_JSON`` is DRF's too.

Two differences, both in JSON's own terms the same numbers or better: a float below 1e-4 is written in
positional form where ``json`` writes an exponent (``0.000025``, not ``2.5e-05``; the same double when
read), and a non-finite float (NaN, ±Infinity) is written ``null`` where DRF raised ``ValueError``
(``STRICT_JSON``): a 500 before.
"""

from __future__ import annotations

import orjson
from rest_framework import renderers

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_LS, _PS = "\u2028".encode(), "\u2029".encode()


def javascript_safe(out: bytes) -> bytes:
    """JSON bytes with U+2028 and U+2029 escaped, as DRF writes them: the text stays a JavaScript subset."""
    if _LS in out or _PS in out:
        out = out.replace(_LS, b"\\u2028").replace(_PS, b"\\u2029")
    return out


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if self.ensure_ascii or not self.compact or self.get_indent(accepted_media_type, renderer_context or {}):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            out = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
        except (orjson.JSONEncodeError, ValueError):  # ValueError: DRF's default (an aware time)
            return super().render(data, accepted_media_type, renderer_context)
        return javascript_safe(out)
