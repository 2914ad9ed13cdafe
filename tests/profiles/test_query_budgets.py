"""Query budgets on the hot paths, Saleor style: exact counts, so an N+1 (or any new query) fails the
suite and the diff shows the SQL. Counts are per request, after the per-process key cache is warm.
When a change needs a query more, update the budget here on purpose, with the reason."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles.models import Profile
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db


def queries_of(send) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = send()
    assert response.status_code == 200, response.content
    return [q["sql"] for q in captured]


@pytest.fixture
def tracker(write_key, settings):
    settings.API_KEY_CACHE_SECONDS = 60  # production keeps looked-up keys for a few seconds
    client = writer(write_key)
    assert call(client, "identify", userId="known", anonymousId="a-known").status_code == 200
    return client


def track(n: int, user: str = "known") -> list[dict]:
    return [{"type": "track", "userId": user, "event": "Product Viewed", "properties": {"n": i}} for i in range(n)]


def test_track_of_a_known_person(tracker):
    sql = queries_of(lambda: call(tracker, "track", userId="known", event="Product Viewed"))
    assert len(sql) == BUDGET_TRACK_KNOWN, sql


def test_batch_of_known_people_costs_the_same_for_2_or_50_events(tracker):
    two = queries_of(lambda: batch(tracker, *track(2)))
    fifty = queries_of(lambda: batch(tracker, *track(50)))
    assert len(two) == BUDGET_BATCH_KNOWN, two
    assert len(fifty) == len(two), fifty


def test_batch_of_new_people_costs_the_same_for_2_or_50_people(tracker):
    two = queries_of(lambda: batch(tracker, *[e for u in range(2) for e in track(1, f"new2-{u}")]))
    fifty = queries_of(lambda: batch(tracker, *[e for u in range(50) for e in track(1, f"new50-{u}")]))
    assert len(two) == BUDGET_BATCH_NEW, two
    assert len(fifty) == len(two), fifty


def test_profile_read_api(tracker, secret_client, settings):
    profile = Profile.objects.get()
    secret_client.get(f"/api/v1/profiles/{profile.pk}/")  # warm the key cache
    detail = queries_of(lambda: secret_client.get(f"/api/v1/profiles/{profile.pk}/"))
    events = queries_of(lambda: secret_client.get(f"/api/v1/profiles/{profile.pk}/events/"))
    listing = queries_of(lambda: secret_client.get("/api/v1/profiles/?user_id=known"))
    assert (len(detail), len(events), len(listing)) == BUDGET_PROFILE_READS, (detail, events, listing)


# savepoint, consent suppression check, owners, profile lock, seen times, INSERT events, PendingWork
# upsert, release (the test's outer transaction turns BEGIN/COMMIT into a savepoint)
BUDGET_TRACK_KNOWN = 8
# the same plus the batch's known-messageId check
BUDGET_BATCH_KNOWN = 9
# plus the identifiers' advisory locks, the suppression check again under those locks (an erasure that
# committed after the first check is seen), owners again, the owner lock, the bulk profile and
# identifier inserts
BUDGET_BATCH_NEW = 14
# detail (profile with its survivor joined, identifiers), events page, list page
BUDGET_PROFILE_READS = (2, 2, 2)
