"""A small shop with four known kinds of customer, for clustering tests: real profiles and events,
computed traits by profiles' own ``traits_refresh``."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

from profiles.models import Event, Profile, Source
from profiles.traits import traits_refresh

DAY = timedelta(days=1)

# kind -> orders, order value range, days since last order, device, category, views
GROUPS: dict[str, dict] = {
    "big": {
        "orders": 6,
        "value": (480, 520),
        "last": (2, 4),
        "device": "desktop",
        "category": "home decor",
        "views": 3,
    },
    "lapsed": {"orders": 1, "value": (25, 30), "last": (240, 260), "device": "mobile", "category": "toys", "views": 1},
    "browsers": {"orders": 0, "value": (0, 0), "last": (1, 2), "device": "mobile", "category": "garden", "views": 8},
    "regulars": {
        "orders": 12,
        "value": (14, 16),
        "last": (2, 4),
        "device": "tablet",
        "category": "kitchen",
        "views": 2,
    },
}


def _source() -> Source:
    source, _ = Source.objects.get_or_create(
        name="clustering-tests", defaults={"write_key_prefix": "wk_clu", "write_key_hash": uuid.uuid4().hex}
    )
    return source


def customer(kind: str, *, now: datetime, rng: random.Random) -> tuple[Profile, list[Event]]:
    spec = GROUPS[kind]
    source = _source()
    last = now - rng.uniform(*spec["last"]) * DAY
    times = [last - i * rng.uniform(14, 16) * DAY for i in range(spec["orders"])]
    views = [last - rng.uniform(0, 2) * DAY for _ in range(spec["views"])]
    stamps = times + views
    profile = Profile.objects.create(first_seen_at=min(stamps), last_seen_at=max(stamps))
    events = []
    for at in times:
        value = round(rng.uniform(*spec["value"]), 2)
        properties = {"revenue": value, "products": [{"category": spec["category"], "price": value, "quantity": 1}]}
        events.append(_event(source, profile, "Order Completed", at, properties, spec["device"]))
    for at in views:
        events.append(_event(source, profile, "Product Viewed", at, {"category": spec["category"]}, spec["device"]))
    return profile, events


def _event(source, profile, name, at, properties, device) -> Event:
    return Event(
        source=source,
        message_id=uuid.uuid4().hex,
        profile=profile,
        type="track",
        name=name,
        properties=properties,
        context={},
        occurred_at=at,
        received_at=at,
        device_type=device,
    )


def shop(*, now: datetime, per_group: int = 20, seed: int = 1) -> dict[str, list[str]]:
    """Create ``per_group`` customers of each kind; returns kind -> profile ids (traits computed)."""
    rng = random.Random(seed)
    ids: dict[str, list[str]] = {kind: [] for kind in GROUPS}
    events: list[Event] = []
    for kind in GROUPS:
        for _ in range(per_group):
            profile, made = customer(kind, now=now, rng=rng)
            ids[kind].append(str(profile.pk))
            events.extend(made)
    Event.objects.bulk_create(events)
    traits_refresh(profile_ids=[pid for group in ids.values() for pid in group], now=now)
    return ids
