from __future__ import annotations

import logging
import threading
import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from cdp.models import ApiKey
from profiles.models import Source

logger = logging.getLogger("cdp.api")

# A process takes its budget from Redis in leases of up to LEASE_MAX requests, at most a
# LEASE_SHARE-th of the limit (decision 0057): one round trip per lease instead of one per request.
LEASE_MAX = 50
LEASE_SHARE = 100


class _Leases:
    """What this process may still admit per key in the current window, reserved in Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.left: dict[str, tuple[int, int]] = {}  # budget -> (window, requests left; -1: the limit is spent)

    def take(self, key: str, window: int) -> int | None:
        """1 admitted, 0 refused (spent in this window), None: ask Redis for a lease."""
        with self.lock:
            held = self.left.get(key)
            if held is None or held[0] != window:
                return None
            if held[1] < 0:
                return 0
            if held[1] == 0:
                return None
            self.left[key] = (window, held[1] - 1)
            return 1

    def give(self, key: str, window: int, left: int) -> None:
        with self.lock:
            self.left[key] = (window, left)


_leases = _Leases()


def leases_forget() -> None:
    """Forget the leases this process holds (tests: the Redis database they came from is emptied)."""
    with _leases.lock:
        _leases.left.clear()


class ApiKeyRateThrottle(BaseThrottle):
    """Rate limit per key: each write key and each secret key has its own budget (429 + Retry-After).

    A fixed window counted in the shared Redis, so the limit holds across web processes. Each
    process reserves its requests in leases (one pipelined INCRBY + EXPIRE for up to
    ``min(LEASE_MAX, limit // LEASE_SHARE)`` requests) and admits them from memory: never more than
    the limit in a window across all processes, and at most ``processes * (lease - 1)`` fewer (a lease
    not used up when the window ends; a lease of one, for limits under 200 a window, is exact). A
    process that saw the limit spent refuses until the window ends without asking again. With Redis
    unreachable the throttle lets requests through: accepting events matters more than limiting.
    """

    THROTTLE_RATES = SimpleRateThrottle.THROTTLE_RATES
    parse_rate = SimpleRateThrottle.parse_rate

    def allow_request(self, request, view) -> bool:
        if isinstance(request.auth, Source):
            scope = "write_key"
        elif isinstance(request.auth, ApiKey):
            scope = "secret_key"
        else:
            return True
        limit, duration = self.parse_rate(self.THROTTLE_RATES[scope])
        now = time.time()
        window = int(now // duration)
        self._wait = duration - (now % duration)
        budget = f"{scope}:{request.auth.pk}"
        held = _leases.take(budget, window)
        if held is not None:
            return bool(held)
        lease = max(1, min(LEASE_MAX, limit // LEASE_SHARE))
        try:
            full_key = cache.make_and_validate_key(f"throttle:{budget}:{window}")
            client = cache._cache.get_client(full_key, write=True)  # the raw client: one pipelined round trip
            pipe = client.pipeline()
            pipe.incrby(full_key, lease)
            pipe.expire(full_key, int(duration) + 1)
            count, _ = pipe.execute()
        except Exception as exc:  # cache backend down
            logger.warning("throttle skipped, cache unavailable: %s", exc)
            return True
        granted = min(lease, limit - (count - lease))  # the part of this lease within the limit
        if granted <= 0:
            _leases.give(budget, window, -1)
            return False
        _leases.give(budget, window, granted - 1)  # this request takes one
        return True

    def wait(self) -> float:
        return max(self._wait, 1.0)
