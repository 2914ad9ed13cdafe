"""Test override: the same real PostgreSQL and Redis, an isolated Redis database, fast hashing."""

import os
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DEBUG", "true")  # development security defaults (no HTTPS redirect)

from .settings import *  # noqa: F403
from .settings import CACHES

# Tests (and the workers they start) use their own Redis database, so a running demo's workers
# never take a test's task and a test never flushes demo data.
TEST_REDIS_URL = urlunsplit(urlsplit(REDIS_URL)._replace(path=f"/{env.int('TEST_REDIS_DB', default=15)}"))
REDIS_URL = TEST_REDIS_URL
CACHES["default"]["LOCATION"] = TEST_REDIS_URL
CACHES["default"]["KEY_PREFIX"] = "cdp-test"
CELERY_BROKER_URL = TEST_REDIS_URL
CELERY_RESULT_BACKEND = TEST_REDIS_URL
for queue in RQ_QUEUES.values():
    queue["URL"] = TEST_REDIS_URL

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"write_key": "100000/s", "secret_key": "100000/s"}
WHITENOISE_AUTOREFRESH = True  # no collectstatic before tests
API_KEY_CACHE_SECONDS = 0  # revocation tests expect the next request to see it
