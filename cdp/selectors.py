"""Reads of the project package."""

from __future__ import annotations

from .keys import key_hash
from .models import ApiKey


def api_key_by_raw(*, raw_key: str) -> ApiKey | None:
    return ApiKey.objects.filter(key_hash=key_hash(raw_key), revoked_at__isnull=True).first()
