"""Concurrent merges on real PostgreSQL connections: no deadlock surfaces, nothing lost or doubled."""

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from profiles.models import Event, Identifier, Profile
from profiles.services import events_ingest, source_create
from profiles.tracking.validate import clean_event
from tests.profiles.helpers import deadlocks

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


def test_batches_that_merge_alongside_pending_processing_never_deadlock():
    from profiles.services import pending_process
    from profiles.tracking import ingest

    # given people with devices seen before they log in
    source, _ = source_create(name="deadlocks")
    rng = random.Random(11)
    people = {f"user-{p}": [f"dev-{p}-{d}" for d in range(6)] for p in range(8)}
    seen = [
        {"type": "track", "anonymousId": dev, "event": "Order Completed", "messageId": f"w-{dev}"}
        for devs in people.values()
        for dev in devs
    ]
    events_ingest(source=source, events=[clean_event(p, received_at=T0) for p in seen])
    # when 4 connections send batches that log devices in (merging profiles, in random orders)
    # while a fifth runs the follow-up work the whole time
    batches = []
    for _ in range(40):
        batch = []
        for _ in range(6):
            user = rng.choice(list(people))
            dev = rng.choice(people[user])
            batch.append({"type": "identify", "userId": user, "anonymousId": dev, "traits": {"email": f"{user}@x.io"}})
            batch.append({"type": "track", "anonymousId": rng.choice(people[user]), "event": "Order Completed"})
        batches.append(batch)
    before = deadlocks()
    ingest.retry_counts.clear()
    errors: list[Exception] = []
    done = threading.Event()

    def sender(chunk):
        try:
            for batch in chunk:
                events_ingest(source=source, events=[clean_event(p, received_at=T0) for p in batch])
        except Exception as exc:  # asserted on below
            errors.append(exc)
        finally:
            connection.close()

    def processor():
        try:
            while not done.is_set():
                pending_process()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    follow = threading.Thread(target=processor)
    follow.start()
    senders = [threading.Thread(target=sender, args=(batches[i::4],)) for i in range(4)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(timeout=300)
    done.set()
    follow.join(timeout=60)
    # then no batch failed, PostgreSQL detected no deadlock at all, and ingestion never had to retry one
    assert errors == []
    assert deadlocks() - before == 0
    assert ingest.retry_counts.get("DeadlockDetected", 0) == 0
    # and every person is one live profile with all their identified devices, nothing on a merged one
    identified = {p["anonymousId"] for b in batches for p in b if p["type"] == "identify"}
    never = sum(1 for devs in people.values() for d in devs if d not in identified)
    assert Profile.objects.filter(merged_into__isnull=True).count() == len(people) + never
    assert not Identifier.objects.filter(profile__merged_into__isnull=False).exists()


def test_pending_process_never_waits_on_a_row_a_batch_holds(monkeypatch):
    """A batch marks its PendingWork rows in several upserts (a merge's pair, then the whole batch), so
    across its statements it does not take them in id order. The worker deleting the rows it finished
    must not wait for one such a batch holds: that closed a cycle with the batch's next upsert."""
    from django.db import transaction

    from profiles import hooks
    from profiles.models import PendingWork
    from profiles.pending import pending_mark, pending_process

    # given two profiles with follow-up work pending
    made = [Profile.objects.create(first_seen_at=T0, last_seen_at=T0) for _ in range(2)]
    low, high = sorted(made, key=lambda p: str(p.pk))
    pending_mark([low.pk, high.pk])
    between, holding, errors = threading.Event(), threading.Event(), []

    def deliver(**kwargs):  # the worker between its two transactions: the follow-up work handed on
        between.set()
        holding.wait(10)
        return True

    monkeypatch.setattr(hooks.on_profile_activity, "deliver", deliver)

    def worker():
        try:
            pending_process(max_rounds=1)
        except Exception as exc:  # asserted on below
            errors.append(exc)
        finally:
            connection.close()

    def batch():  # marks the higher id first (a merge's pair), then the lower (the whole batch)
        try:
            between.wait(10)
            with transaction.atomic():
                pending_mark([high.pk])
                holding.set()
                threading.Event().wait(0.5)  # the worker's delete reaches the rows meanwhile
                pending_mark([low.pk])
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    before = deadlocks()
    threads = [threading.Thread(target=worker), threading.Thread(target=batch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then neither waited on the other: no deadlock, both rows pending again for the batch's work
    assert errors == []
    assert deadlocks() - before == 0
    assert set(PendingWork.objects.values_list("profile_id", flat=True)) == {low.pk, high.pk}
