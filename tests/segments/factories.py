"""Plain helpers that write real rows for segments tests (profiles and events)."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.utils import timezone

from profiles.models import Event, Profile, Source


def source() -> Source:
    src, _ = Source.objects.get_or_create(
        name="segments-tests", defaults={"write_key_prefix": "wk_test", "write_key_hash": uuid.uuid4().hex}
    )
    return src


def profile(*, traits: dict | None = None, computed: dict | None = None, at: datetime | None = None) -> Profile:
    at = at or timezone.now()
    return Profile.objects.create(
        traits=traits or {}, computed=computed or {}, first_seen_at=at, last_seen_at=at, computed_at=at
    )


def event(
    prof: Profile,
    name: str,
    at: datetime,
    *,
    properties: dict | None = None,
    type: str = "track",
    device_type: str = "",
    local_hour: int | None = None,
    context: dict | None = None,
) -> Event:
    return Event.objects.create(
        source=source(),
        message_id=uuid.uuid4().hex,
        profile=prof,
        type=type,
        name=name,
        properties=properties or {},
        context=context or {},
        occurred_at=at,
        received_at=at,
        device_type=device_type,
        local_hour=local_hour,
    )
