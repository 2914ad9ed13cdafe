"""Reads of the project package."""

from __future__ import annotations

from .keys import key_hash
from .models import ApiKey


def api_key_by_raw(*, raw_key: str) -> ApiKey | None:
    """The unrevoked secret key (cached briefly per process, see cdp.api.keycache)."""
    from cdp.api.keycache import cached_lookup

    digest = key_hash(raw_key)
    return cached_lookup(
        "secret", digest, lambda: ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
    )
