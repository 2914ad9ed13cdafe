"""Writes of the project package: secret API keys, the demo admin user, heartbeats."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from .keys import SECRET_KEY_PREFIX, key_display_prefix, key_generate, key_hash
from .models import ApiKey

HEARTBEAT_CACHE_KEY = "cdp:heartbeat"


def api_key_create(*, name: str) -> tuple[ApiKey, str]:
    """Create a secret key; returns the row and the raw key, which is never stored or shown again."""
    name = name.strip()
    if not name:
        raise ValueError("A key needs a name.")
    raw = key_generate(prefix=SECRET_KEY_PREFIX)
    key = ApiKey.objects.create(name=name, prefix=key_display_prefix(raw), key_hash=key_hash(raw))
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a secret key: every web process refuses it within ``API_KEY_CACHE_SECONDS`` (10 s by
    default, the per-process key cache), at once where the cache is off (0)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


@transaction.atomic
def admin_user_ensure(*, username: str) -> tuple[str, str]:
    """Create (or reset) a superuser with a fresh random password; returns (username, password)."""
    password = secrets.token_urlsafe(12)
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@localhost"})
    user.is_staff = True
    user.is_superuser = True
    user.is_active = True
    user.set_password(password)
    user.save()
    return username, password


def ping(*, value: str) -> dict:
    """Round trip used by health checks and tests: proves a worker runs and reaches PostgreSQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (database,) = cursor.fetchone()
    return {"pong": value, "database": database}


def heartbeat_record() -> str:
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_CACHE_KEY, now, timeout=None)
    return now
