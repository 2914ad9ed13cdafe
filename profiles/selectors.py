"""Reads of the profiles app."""

from __future__ import annotations

from cdp.keys import key_hash

from .models import Source


def source_by_write_key(*, raw_key: str) -> Source | None:
    return Source.objects.filter(write_key_hash=key_hash(raw_key), is_active=True).first()
