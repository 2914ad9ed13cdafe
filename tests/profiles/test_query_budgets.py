"""Query budgets on the hot paths, Saleor style: exact counts, so an N+1 (or any new query) fails the
suite and the diff shows the SQL. Counts are per request, after the per-process key cache is warm.
When a change needs a query more, update the budget here on purpose, with the reason.

The tracking API only accepts into the intake log; stitching is counted separately, per batch a
worker takes (``intake_drain``), so the tests here stitch when they choose (``intake_async``)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles.models import Profile
from profiles.tracking.worker import intake_drain
from tests.profiles.helpers import batch, call, writer

pytestmark = [pytest.mark.django_db, pytest.mark.intake_async]


def queries_of(send) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = send()
    assert response.status_code == 200, response.content
    return [q["sql"] for q in captured]


@pytest.fixture
def tracker(write_key, settings):
    from consent.services import purposes_ensure

    settings.API_KEY_CACHE_SECONDS = 60  # production keeps looked-up keys for a few seconds
    purposes_ensure()  # as every real database has them (seeded by migration; flushed by some tests)
    client = writer(write_key)
    assert call(client, "identify", userId="known", anonymousId="a-known").status_code == 200
    intake_drain()
    return client


def stitch_queries() -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        intake_drain()
    return [q["sql"] for q in captured]


def track(n: int, user: str = "known") -> list[dict]:
    return [{"type": "track", "userId": user, "event": "Product Viewed", "properties": {"n": i}} for i in range(n)]


def test_track_of_a_known_person(tracker):
    sql = queries_of(lambda: call(tracker, "track", userId="known", event="Product Viewed"))
    assert len(sql) == BUDGET_TRACK_KNOWN, sql


def test_batch_of_known_people_costs_the_same_for_2_or_50_events(tracker):
    two = queries_of(lambda: batch(tracker, *track(2)))
    fifty = queries_of(lambda: batch(tracker, *track(50)))
    assert len(two) == BUDGET_BATCH_ACCEPT, two
    assert len(fifty) == len(two), fifty


def test_batch_of_new_people_costs_the_same_for_2_or_50_people(tracker):
    two = queries_of(lambda: batch(tracker, *[e for u in range(2) for e in track(1, f"new2-{u}")]))
    fifty = queries_of(lambda: batch(tracker, *[e for u in range(50) for e in track(1, f"new50-{u}")]))
    assert len(two) == BUDGET_BATCH_ACCEPT, two
    assert len(fifty) == len(two), fifty


def test_stitching_a_batch_of_known_people_costs_the_same_for_2_or_50_events(tracker, settings):
    settings.CDP_INTAKE_PARTITIONS = 1  # every call in one batch
    batch(tracker, *track(2))
    two = stitch_queries()
    batch(tracker, *track(50))
    fifty = stitch_queries()
    assert len(two) == BUDGET_STITCH_KNOWN, two
    assert len(fifty) == len(two), fifty


def test_stitching_a_batch_of_new_people_costs_the_same_for_2_or_50_people(tracker, settings):
    settings.CDP_INTAKE_PARTITIONS = 1
    batch(tracker, *[e for u in range(2) for e in track(1, f"new2-{u}")])
    two = stitch_queries()
    batch(tracker, *[e for u in range(50) for e in track(1, f"new50-{u}")])
    fifty = stitch_queries()
    assert len(two) == BUDGET_STITCH_NEW, two
    assert len(fifty) == len(two), fifty


def test_an_idle_stitch_worker_looks_once_and_stops(tracker):
    assert len(stitch_queries()) == BUDGET_STITCH_IDLE


def test_profile_read_api(tracker, secret_client, settings):
    profile = Profile.objects.get()
    secret_client.get(f"/api/v1/profiles/{profile.pk}/")  # warm the key cache
    detail = queries_of(lambda: secret_client.get(f"/api/v1/profiles/{profile.pk}/"))
    events = queries_of(lambda: secret_client.get(f"/api/v1/profiles/{profile.pk}/events/"))
    listing = queries_of(lambda: secret_client.get("/api/v1/profiles/?user_id=known"))
    assert (len(detail), len(events), len(listing)) == BUDGET_PROFILE_READS, (detail, events, listing)


# accept: one INSERT into the intake log with consent's suppression check in it, its own transaction
# (no look-up before it, no BEGIN/COMMIT: decision 0053); no identity work in the request
BUDGET_TRACK_KNOWN = 1
# a batch: the same, whatever its size and whoever its people
BUDGET_BATCH_ACCEPT = 1
# a worker's batch: savepoint, lease timeouts, take its partitions, read their rows (with whether each
# is stored already: no separate known-messageId check), the sources, then per source a savepoint,
# suppression, owners, the owners' profiles locked without waiting (decision 0069), profile lock, seen
# times, INSERT events, PendingWork upsert, release; delete the rows, the partitions' progress,
# release; then the next take finds nothing (the idle cost below)
BUDGET_STITCH_KNOWN = 24
# plus the identifiers' advisory locks, the suppression check again under those locks, owners read
# again, the bulk profile and identifier inserts, and the consent purposes (context consent)
BUDGET_STITCH_NEW = 28
# savepoint, lease timeouts, take, release; then the partition rows ensured in a transaction of their
# own (savepoint, insert, release), so no worker ever waits for another's batch to see them
BUDGET_STITCH_IDLE = 7
# detail (profile with its survivor joined, identifiers, calls still in intake), events page, list page
# (identifier with profile, identifiers, calls still in intake)
BUDGET_PROFILE_READS = (3, 2, 3)
