"""Concurrent merges on real PostgreSQL connections: no deadlock surfaces, nothing lost or doubled."""

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from profiles.models import Event, Identifier, Profile
from profiles.services import events_ingest, source_create
from profiles.tracking.validate import clean_event

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def run_threads(source, payload_lists) -> list[Exception]:
    errors: list[Exception] = []
    barrier = threading.Barrier(len(payload_lists))

    def worker(payloads):
        try:
            barrier.wait()
            for payload in payloads:
                event = clean_event(payload, received_at=T0 + timedelta(days=1))
                events_ingest(source=source, events=[event])
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(p,)) for p in payload_lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_overlapping_merges_from_parallel_connections_converge_to_one_profile_per_person():
    # given 6 people, each with 8 anonymous devices seen before they log in
    source, _ = source_create(name="concurrency")
    rng = random.Random(7)
    people = {f"user-{p}": [f"dev-{p}-{d}" for d in range(8)] for p in range(6)}
    warmup = [
        clean_event(
            {
                "type": "track",
                "anonymousId": dev,
                "event": "Product Viewed",
                "messageId": f"w-{dev}",
                "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            },
            received_at=T0 + timedelta(days=1),
        )
        for i, dev in enumerate(d for devs in people.values() for d in devs)
    ]
    events_ingest(source=source, events=warmup)
    # when 6 connections log every device in at once, in different orders, with a shared email per person
    work = []
    for user, devices in people.items():
        for dev in devices:
            work.append(
                {
                    "type": "identify",
                    "userId": user,
                    "anonymousId": dev,
                    "messageId": f"l-{user}-{dev}",
                    "traits": {"email": f"{user}@example.com"},
                    "timestamp": (T0 + timedelta(hours=1)).isoformat(),
                }
            )
            work.append(
                {
                    "type": "identify",
                    "anonymousId": dev,
                    "messageId": f"e-{user}-{dev}",
                    "traits": {"email": f"{user}@example.com"},
                    "timestamp": (T0 + timedelta(hours=2)).isoformat(),
                }
            )
    rng.shuffle(work)
    errors = run_threads(source, [work[i::6] for i in range(6)])
    # then nothing failed, and each person is exactly one live profile owning all their identifiers and events
    assert errors == []
    live = Profile.objects.filter(merged_into__isnull=True)
    assert live.count() == len(people)
    assert not Identifier.objects.filter(profile__merged_into__isnull=False).exists()
    assert not Event.objects.filter(profile__merged_into__isnull=False).exists()
    for user, devices in people.items():
        profile = Identifier.objects.get(kind="user_id", value=user).profile
        owned = set(profile.identifiers.values_list("kind", "value"))
        assert owned == {("user_id", user), ("email", f"{user}@example.com"), *(("anonymous_id", d) for d in devices)}
        assert profile.events.count() == len(devices) * 3
    assert Event.objects.count() == len(warmup) + len(work)
