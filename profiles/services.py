"""Writes of the profiles app."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from cdp.keys import WRITE_KEY_PREFIX, key_display_prefix, key_generate, key_hash

from .models import Source


class SourceNameTaken(ValueError):
    pass


def source_create(*, name: str) -> tuple[Source, str]:
    """Create a source with a new write key; returns the row and the raw key (shown once)."""
    name = name.strip()
    if not name:
        raise ValueError("A source needs a name.")
    raw = key_generate(prefix=WRITE_KEY_PREFIX)
    try:
        with transaction.atomic():
            source = Source.objects.create(
                name=name, write_key_prefix=key_display_prefix(raw), write_key_hash=key_hash(raw)
            )
    except IntegrityError as exc:
        raise SourceNameTaken(f"A source named {name!r} already exists.") from exc
    return source, raw


def source_rotate_write_key(*, source: Source) -> tuple[Source, str]:
    """Replace a source's write key; the old one stops working at once."""
    raw = key_generate(prefix=WRITE_KEY_PREFIX)
    source.write_key_prefix = key_display_prefix(raw)
    source.write_key_hash = key_hash(raw)
    source.save(update_fields=["write_key_prefix", "write_key_hash"])
    return source, raw
