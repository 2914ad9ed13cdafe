"""Writes of the profiles app. Larger services live in their modules and are re-exported here."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from cdp.api import keycache
from cdp.keys import WRITE_KEY_PREFIX, key_display_prefix, key_generate, key_hash
from profiles.identity.merge import profile_merge, profile_unmerge
from profiles.identity.resolve import profile_resolve
from profiles.identity.runs import (
    candidate_approve,
    candidate_reject,
    matching_run_execute,
    matching_run_start,
    run_queued_matching,
)
from profiles.pending import pending_process
from profiles.tracking.ingest import events_ingest
from profiles.tracking.intake import events_accept, intake_poison_send_back
from profiles.traits import traits_recompute_all, traits_refresh

from .models import Source
from .storefront import origins_normalize, user_token_secret_generate

logger = logging.getLogger("cdp.profiles")


class SourceNameTaken(ValueError):
    pass


def source_create(*, name: str, allowed_origins: list[str] | None = None) -> tuple[Source, str]:
    """Create a source with a new write key; returns the row and the raw key (shown once).

    ``allowed_origins``: browser origins that may send with the key (``*`` for any, only when asked
    for explicitly); raises ``InvalidOrigin`` for anything that is not scheme://host[:port]."""
    name = name.strip()
    if not name:
        raise ValueError("A source needs a name.")
    origins = origins_normalize(allowed_origins)
    raw = key_generate(prefix=WRITE_KEY_PREFIX)
    try:
        with transaction.atomic():
            source = Source.objects.create(
                name=name,
                write_key_prefix=key_display_prefix(raw),
                write_key_hash=key_hash(raw),
                allowed_origins=origins,
                user_token_secret=user_token_secret_generate(),
            )
    except IntegrityError as exc:
        raise SourceNameTaken(f"A source named {name!r} already exists.") from exc
    keycache.clear()
    return source, raw


def source_set_allowed_origins(*, source: Source, allowed_origins: list[str]) -> Source:
    """Replace the browser origins a source accepts (normalised; raises ``InvalidOrigin``)."""
    source.allowed_origins = origins_normalize(allowed_origins)
    source.save(update_fields=["allowed_origins"])
    keycache.clear()
    return source


def source_rotate_user_token_secret(*, source: Source) -> Source:
    """A new HMAC secret for user tokens; tokens signed with the old one stop working at once."""
    source.user_token_secret = user_token_secret_generate()
    source.save(update_fields=["user_token_secret"])
    keycache.clear()
    return source


def source_rotate_write_key(*, source: Source) -> tuple[Source, str]:
    """Replace a source's write key. The new key works at once; the old one is refused by every web
    process within ``API_KEY_CACHE_SECONDS`` (10 s by default: each process caches a looked-up key
    that long, cdp/api/keycache.py), and at once where the cache is off (0)."""
    raw = key_generate(prefix=WRITE_KEY_PREFIX)
    source.write_key_prefix = key_display_prefix(raw)
    source.write_key_hash = key_hash(raw)
    source.save(update_fields=["write_key_prefix", "write_key_hash"])
    return source, raw


__all__ = [
    "candidate_approve",
    "candidate_reject",
    "events_accept",
    "events_ingest",
    "intake_poison_send_back",
    "matching_run_execute",
    "matching_run_start",
    "pending_process",
    "profile_merge",
    "profile_resolve",
    "profile_unmerge",
    "run_queued_matching",
    "source_create",
    "source_rotate_user_token_secret",
    "source_rotate_write_key",
    "source_set_allowed_origins",
    "traits_recompute_all",
    "traits_refresh",
]
