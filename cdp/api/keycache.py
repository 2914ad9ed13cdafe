"""A short in-process cache of key look-ups (source or secret key by hash).

Every tracking call authenticates; a database round trip per call is a fifth of its cost. Entries
live ``API_KEY_CACHE_SECONDS`` (default 10; 0 disables): a revoked key or disabled source stops
working within that time in every web process. Unknown keys are not cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings

_entries: dict[str, tuple[float, object]] = {}
MAX_ENTRIES = 1000


def cached_lookup(kind: str, key_hash: str, load: Callable[[], object | None]):
    ttl = getattr(settings, "API_KEY_CACHE_SECONDS", 10)
    if ttl <= 0:
        return load()
    cache_key = f"{kind}:{key_hash}"
    now = time.monotonic()
    hit = _entries.get(cache_key)
    if hit and hit[0] > now:
        return hit[1]
    value = load()
    if value is not None:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[cache_key] = (now + ttl, value)
    return value


def clear() -> None:
    _entries.clear()
