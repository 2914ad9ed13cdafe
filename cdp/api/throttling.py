from __future__ import annotations

import logging
import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from cdp.models import ApiKey
from profiles.models import Source

logger = logging.getLogger("cdp.api")


class ApiKeyRateThrottle(BaseThrottle):
    """Rate limit per key: each write key and each secret key has its own budget (429 + Retry-After).

    A fixed window counted in the shared Redis with one INCR per request (so the limit holds across
    web processes and costs one round trip). With Redis unreachable the throttle lets requests
    through: accepting events matters more than limiting.
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
        window = int(time.time() // duration)
        key = f"throttle:{scope}:{request.auth.pk}:{window}"
        self._wait = duration - (time.time() % duration)
        try:
            full_key = cache.make_and_validate_key(key)
            client = cache._cache.get_client(full_key, write=True)  # the raw client: one pipelined round trip
            pipe = client.pipeline()
            pipe.incr(full_key)
            pipe.expire(full_key, int(duration) + 1)
            count, _ = pipe.execute()
        except Exception as exc:  # cache backend down
            logger.warning("throttle skipped, cache unavailable: %s", exc)
            return True
        return count <= limit

    def wait(self) -> float:
        return max(self._wait, 1.0)
