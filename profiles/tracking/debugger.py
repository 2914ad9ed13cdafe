"""The live event debugger's memory of rejected calls (Segment's debugger shows them; we keep them briefly).

Rejected calls are never stored as events, so the tracking views hand them here: one pipelined
Redis round trip per rejecting request keeps the newest ``KEEP`` rejections per source for
``TTL_SECONDS`` and a per-minute count for the dashboard. Redis being down never fails a request.
"""

from __future__ import annotations

import json
import logging
import time

from django.core.cache import cache

logger = logging.getLogger("cdp.tracking")

KEEP = 200
TTL_SECONDS = 24 * 3600
_LIST = "cdp:debug:rejected:{source_id}"
_MINUTE = "cdp:debug:rejected-per-minute:{minute}"


def _client(key: str):
    return cache._cache.get_client(key, write=True)  # the raw client: lists and one pipeline


def _describe(item) -> dict:
    if not isinstance(item, dict):
        return {"type": type(item).__name__}
    described = {k: item.get(k) for k in ("type", "event", "name", "userId", "anonymousId", "messageId") if item.get(k)}
    return {k: str(v)[:120] for k, v in described.items()}


def rejections_record(*, source_id: int, rejections: list[dict]) -> None:
    """Keep rejected calls of one request: each ``{"errors": {field: [messages]}, "call": <the call>}``."""
    if not rejections:
        return
    now = time.time()
    key = _LIST.format(source_id=source_id)
    minute = _MINUTE.format(minute=int(now // 60))
    rows = [
        json.dumps({"at": now, "errors": r.get("errors") or {}, "call": _describe(r.get("call"))}, default=str)
        for r in rejections[:KEEP]
    ]
    try:
        pipe = _client(key).pipeline()
        pipe.lpush(key, *rows)
        pipe.ltrim(key, 0, KEEP - 1)
        pipe.expire(key, TTL_SECONDS)
        pipe.incrby(minute, len(rejections))
        pipe.expire(minute, TTL_SECONDS + 3600)
        pipe.execute()
    except Exception:  # the debugger is a convenience; ingestion answers regardless
        logger.warning("could not keep rejected calls for the debugger", exc_info=True)


def rejections_forget(*, values: set[str]) -> int:
    """Erasure: drop every kept rejected call that names one of these user or anonymous ids, in every
    source's list. Returns how many were dropped; Redis being down is logged (the lists expire)."""
    if not values:
        return 0
    dropped = 0
    try:
        client = _client(_LIST.format(source_id=0))
        for key in client.scan_iter(match=_LIST.format(source_id="*"), count=500):
            for row in client.lrange(key, 0, -1):
                call = (json.loads(row).get("call") or {}) if row else {}
                if {str(call.get("userId", "")), str(call.get("anonymousId", ""))} & values:
                    dropped += client.lrem(key, 0, row)
    except Exception:
        logger.warning("could not drop an erased person's rejected calls from the debugger", exc_info=True)
    return dropped


def rejections_recent(*, source_id: int, limit: int = 50) -> list[dict]:
    key = _LIST.format(source_id=source_id)
    try:
        rows = _client(key).lrange(key, 0, limit - 1)
    except Exception:
        logger.warning("could not read rejected calls", exc_info=True)
        return []
    return [json.loads(row) for row in rows]


def rejections_per_minute(*, since: float, until: float) -> dict[int, int]:
    """Rejected calls per minute (epoch minute → count) between two epoch times."""
    minutes = list(range(int(since // 60), int(until // 60) + 1))
    if not minutes:
        return {}
    keys = [_MINUTE.format(minute=m) for m in minutes]
    try:
        values = _client(keys[0]).mget(keys)
    except Exception:
        logger.warning("could not read rejection counts", exc_info=True)
        return {}
    return {m: int(v) for m, v in zip(minutes, values, strict=True) if v}
