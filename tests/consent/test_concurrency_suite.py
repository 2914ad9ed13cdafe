"""Ingestion, merges, erasures and segment refreshes of the same people, all at once, on real
PostgreSQL and Redis with a Celery worker (follow-up work, real-time segments) and an rq worker
(the erasures). Afterwards: every identifier is on exactly one live profile, no erased person's PII
is anywhere in the database (the full scan of test_requests), and no segment membership is stale."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from consent.models import DataSubjectRequest, Suppression
from consent.requests import privacy_request_create
from profiles.identity.merge import ProfileVanished, older_first, profile_merge
from profiles.models import Event, Identifier, PendingWork, Profile
from profiles.services import source_create
from profiles.tracking.ingest import events_ingest
from profiles.tracking.validate import clean_event
from segments.models import SegmentMembership
from segments.services import _resolve, segment_create, segment_refresh, segments_profiles_refresh
from tests.conftest import REPO, worker_env
from tests.consent.test_requests import _pii_hits

PEOPLE = 5
ERASED = (0, 1)
BUYERS = {"event": "Order Completed"}
GOLD = {"trait": "tier", "op": "=", "value": "gold"}


def person(p: int) -> dict:
    return {
        "user_id": f"suite-user-{p}-q",
        "email": f"suite.person{p}.mail@example.org",
        "name": f"Xandrea Quillfeather{p}z",
        "street": f"{p}7 Brambleworth Close",
        "anon": f"suite-anon-{p}-zero",  # linked to the user from the start
        "older": f"suite-older-{p}-dev",  # an older device profile, merged during the run
    }


def erased_pii() -> dict[str, str]:
    """What the erased people's own profile held when the erasure was asked for."""
    return {f"{k}{p}": v for p in ERASED for k, v in person(p).items() if k != "older"}


class Suite:
    def __init__(self, source) -> None:
        self.source = source
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def ingest(self, *payloads) -> None:
        now = timezone.now()
        events_ingest(source=self.source, events=[clean_event(p, received_at=now) for p in payloads])

    def run(self, fn, *args) -> threading.Thread:
        def target():
            try:
                fn(*args)
            except Exception as exc:  # collected: the test fails with every thread's error
                with self.lock:
                    self.errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")
            finally:
                connection.close()

        thread = threading.Thread(target=target, name=fn.__name__)
        thread.start()
        return thread


def _payload(kind: str, **fields) -> dict:
    return {"type": kind, "messageId": uuid.uuid4().hex, **fields}


def _setup(suite: Suite) -> None:
    old = (timezone.now() - timedelta(days=10)).isoformat()
    for p in range(PEOPLE):
        who = person(p)
        suite.ingest(_payload("track", anonymousId=who["older"], event="Product Viewed", timestamp=old))
        suite.ingest(
            _payload(
                "identify",
                userId=who["user_id"],
                anonymousId=who["anon"],
                traits={"email": who["email"], "name": who["name"], "address": {"street": who["street"]}},
            ),
            _payload("track", userId=who["user_id"], event="Order Completed", properties={"order_id": f"o-{p}"}),
        )


def _ingesting(suite: Suite, seed: int) -> None:
    rng = random.Random(seed)
    for n in range(10):
        p = rng.randrange(PEOPLE)
        who = person(p)
        extra = f"suite-anon-{p}-extra{seed}{n}"
        batch = [
            _payload(
                "identify",
                userId=who["user_id"],
                anonymousId=extra,
                traits={"email": who["email"], "tier": rng.choice(["gold", "silver"]), "name": who["name"]},
            ),
            _payload("track", userId=who["user_id"], event=rng.choice(["Order Completed", "Product Viewed"])),
        ]
        if p not in ERASED:  # a device seen before it is linked: a merge when the next identify arrives
            batch.append(_payload("track", anonymousId=f"suite-anon-{p}-solo{seed}{n}", event="Product Viewed"))
        suite.ingest(*batch)
        close_old_connections()


def _merging(suite: Suite) -> None:
    for _ in range(6):
        for p in range(PEOPLE):
            who = person(p)
            owners = Identifier.objects.filter(value__in=[who["user_id"], who["older"]]).values_list(
                "profile_id", flat=True
            )
            live = {Profile.objects.filter(pk=o).values_list("merged_into_id", flat=True).first() or o for o in owners}
            pair = list(Profile.objects.filter(pk__in=live, merged_into__isnull=True))
            if len(pair) != 2:
                continue
            try:
                winner, loser = older_first(*pair)
                profile_merge(winner=winner, loser=loser, reason="manual", actor="suite")
            except (ValueError, ProfileVanished, DatabaseError):  # lost the race to another writer: fine
                continue
        time.sleep(0.05)


def _refreshing(suite: Suite, segments: list) -> None:
    for _ in range(6):
        for segment in segments:
            try:
                segment_refresh(segment=segment)
                ids = [str(pk) for pk in Profile.objects.filter(merged_into__isnull=True).values_list("pk", flat=True)]
                segments_profiles_refresh(profile_ids=ids, every_segment=True)
            except DatabaseError as exc:  # a deadlock is retried by the task in production; here: again
                if "deadlock" not in str(exc):
                    raise
        time.sleep(0.05)


def _erasing(suite: Suite) -> None:
    deadline = time.monotonic() + 20
    while Event.objects.count() < 20 and time.monotonic() < deadline:  # in the middle of the traffic
        time.sleep(0.02)
    for p in ERASED:
        privacy_request_create(
            kind="erasure",
            channel="api",
            requested_by="suite",
            identifier_kind="user_id",
            identifier_value=person(p)["user_id"],
            verified=True,
        )
    done = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "privacy", "--burst"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _memberships_true(segments: list) -> bool:
    from segments.rules.compile import members_queryset

    now = timezone.now()
    for segment in segments:
        expected = set(
            members_queryset(segment.definition, now=now, resolve=_resolve(), slug=segment.slug).values_list(
                "pk", flat=True
            )
        )
        actual = set(
            SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
                "profile_id", flat=True
            )
        )
        if expected != actual:
            return False
    return True


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_ingestion_merges_erasures_and_refreshes_of_the_same_people_at_once(celery_worker):
    from profiles.tasks import pending_process

    source, _ = source_create(name="suite")
    suite = Suite(source)
    segments = [
        segment_create(slug="buyers", name="Buyers", definition=BUYERS, refresh="no"),
        segment_create(slug="gold", name="Gold", definition=GOLD, refresh="no"),
    ]
    _setup(suite)
    assert _pii_hits(erased_pii())  # the scan finds what is there

    # when everything runs at once
    threads = [
        *(suite.run(_ingesting, suite, seed) for seed in range(3)),
        suite.run(_merging, suite),
        suite.run(_refreshing, suite, segments),
        suite.run(_erasing, suite),
    ]
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    assert suite.errors == []
    assert DataSubjectRequest.objects.filter(status="done").count() == len(ERASED)
    pending_process.delay()  # what beat's every-minute sweep does

    # then, once the workers have processed the follow-up work, no membership is stale
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (not PendingWork.objects.exists() and _memberships_true(segments)):
        time.sleep(0.2)
    assert not PendingWork.objects.exists()
    assert _memberships_true(segments)
    assert not SegmentMembership.objects.filter(exited_at__isnull=True, profile__merged_into__isnull=False).exists()

    # every identifier is on exactly one live profile (unique per kind and value, never on a merged one)
    assert not Identifier.objects.filter(profile__merged_into__isnull=False).exists()
    assert not Profile.objects.filter(merged_into__isnull=True, identifiers__isnull=True).exists()
    for p in range(PEOPLE):
        if p in ERASED:
            continue
        who = person(p)
        owners = set(
            Identifier.objects.filter(value__in=[who["user_id"], who["email"], who["anon"]]).values_list(
                "profile_id", flat=True
            )
        )
        assert len(owners) == 1, (p, owners)

    # and no erased person's PII is anywhere in the database; their identifiers stay suppressed
    assert _pii_hits(erased_pii()) == {}
    assert Suppression.objects.count() >= 3 * len(ERASED)
