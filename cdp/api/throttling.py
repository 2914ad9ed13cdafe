from __future__ import annotations

import logging

from rest_framework.throttling import SimpleRateThrottle

from cdp.models import ApiKey
from profiles.models import Source


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Rate limit per key: each write key and each secret key has its own budget (429 + Retry-After).

    Counters live in the shared Redis cache, so the limit holds across web processes. With Redis
    unreachable the throttle lets requests through: accepting events matters more than limiting.
    """

    scope = "secret_key"

    def __init__(self) -> None:  # rate depends on the key kind, resolved per request
        pass

    def allow_request(self, request, view) -> bool:
        if isinstance(request.auth, Source):
            self.scope = "write_key"
        elif isinstance(request.auth, ApiKey):
            self.scope = "secret_key"
        else:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # cache backend down
            logging.getLogger("cdp.api").warning("throttle skipped, cache unavailable: %s", exc)
            return True

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
