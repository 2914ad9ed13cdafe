"""The intake path gives the same profiles, traits, events and merges as calls one by one
(tests/profiles/oracle.py states the rule on merges of people new within one batch)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cdp.demo.store import demo_store_payloads
from profiles.models import Merge, Profile
from profiles.services import source_create
from tests.profiles import oracle

pytestmark = [pytest.mark.django_db, pytest.mark.intake_async]

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def one_partition(settings):
    """One partition: the workers take the calls in the order they were accepted, as the reference."""
    settings.CDP_INTAKE_PARTITIONS = 1


def compare(source, payloads: list[dict], batch_size: int, settings) -> tuple[dict, dict]:
    settings.CDP_INTAKE_BATCH = batch_size
    oracle.wipe()
    internal = oracle.reference_run(source, payloads, batch_size=batch_size)
    expected = oracle.outcome(internal_merges=internal)
    oracle.wipe()
    internal = oracle.intake_run(source, payloads)
    got = oracle.outcome(internal_merges=internal)
    return expected, got


def test_new_people_sharing_identifiers_in_one_batch_become_one_profile_without_a_merge(one_partition, settings):
    # given two new visitors, then a call that shows they are one person, all in one batch
    source, _ = source_create(name="equivalence")
    calls = [
        {"type": "track", "anonymousId": "anon-x", "event": "Product Viewed", "timestamp": "2026-03-01T09:00:00Z"},
        {"type": "track", "anonymousId": "anon-y", "event": "Product Viewed", "timestamp": "2026-03-01T09:01:00Z"},
        {"type": "identify", "userId": "u-xy", "anonymousId": "anon-x", "timestamp": "2026-03-01T09:02:00Z"},
        {"type": "identify", "userId": "u-xy", "anonymousId": "anon-y", "timestamp": "2026-03-01T09:03:00Z"},
    ]
    for c in calls:
        c["messageId"] = str(uuid.uuid4())

    # when stitched as one batch and, for reference, call by call
    expected, got = compare(source, calls, batch_size=50, settings=settings)

    # then both leave one profile with the three identifiers and the four events
    assert got == expected
    assert list(got["profiles"]) == [
        frozenset({("anonymous_id", "anon-x"), ("anonymous_id", "anon-y"), ("user_id", "u-xy")})
    ]
    # and the batch recorded no merge (call by call recorded one, internal to the batch by the rule)
    assert (Profile.objects.count(), Merge.objects.count()) == (1, 0)


def test_a_known_person_merged_by_a_batch_records_the_same_merge(one_partition, settings):
    # given two people stitched in an earlier batch, then a call that links them
    source, _ = source_create(name="equivalence")
    calls = [
        {"type": "identify", "anonymousId": "anon-1", "traits": {"email": "ann@example.com"}},
        {"type": "identify", "userId": "u-ann", "anonymousId": "anon-2"},
        {"type": "alias", "userId": "u-ann", "previousId": "anon-1"},
        {"type": "track", "userId": "u-ann", "event": "Order Completed", "properties": {"revenue": 5}},
    ]
    for i, c in enumerate(calls):
        c["messageId"] = str(uuid.uuid4())
        c["timestamp"] = (T0 + timedelta(minutes=i)).isoformat()

    expected, got = compare(source, calls, batch_size=2, settings=settings)

    # then the merge of the two earlier profiles is recorded by both, the same
    assert got == expected
    assert sum(got["merges"].values()) == 1


def test_visitors_logging_in_together_give_the_same_merges_as_calls_one_by_one(one_partition, settings):
    # given visitors and users seen apart in a first batch, then a batch in which they log in: several
    # merges at once, a chain (one user on two devices), new identifiers given on the way, a shared
    # device that must not merge two users, a user's traits stated before and after the merge
    source, _ = source_create(name="equivalence")
    first = [{"type": "track", "anonymousId": f"anon-{p}", "event": "Product Viewed"} for p in "abcdef"]
    first += [{"type": "identify", "userId": f"user-{p}", "traits": {"plan": p}} for p in "abcde"]
    second = [
        {"type": "page", "userId": "user-a", "anonymousId": "anon-a", "name": "Home"},
        {"type": "identify", "userId": "user-b", "anonymousId": "anon-b", "traits": {"first_name": "Bo"}},
        {"type": "track", "userId": "user-a", "anonymousId": "anon-c", "event": "Product Viewed"},
        {"type": "page", "userId": "user-c", "anonymousId": "anon-c", "name": "Home"},
        {"type": "page", "userId": "user-d", "anonymousId": "anon-d", "context": {"traits": {"email": "d@x.org"}}},
        {"type": "identify", "userId": "user-e", "anonymousId": "anon-e", "traits": {"phone": "+4915112345678"}},
        {"type": "track", "userId": "user-d", "anonymousId": "anon-f", "event": "Product Added"},
        {"type": "identify", "userId": "user-b", "traits": {"first_name": "Bob"}},
    ]
    calls = first + second
    for i, c in enumerate(calls):
        c["messageId"] = str(uuid.uuid4())
        c["timestamp"] = (T0 + timedelta(minutes=i)).isoformat()

    # when stitched as two batches and, for reference, call by call
    expected, got = compare(source, calls, batch_size=len(first), settings=settings)

    # then profiles, traits, events and merges are the same
    assert got == expected
    assert sum(n for (status, _, _), n in got["merges"].items() if status == "merged") == 6


def test_the_demo_store_stitched_through_intake_equals_calls_one_by_one(one_partition, settings):
    # given the demo shop's traffic of 25 customers over 10 days (identity cases included)
    source, _ = source_create(name="demo-equivalence")
    _, payloads = demo_store_payloads(customers=25, days=10, seed=7, now=T0)

    expected, got = compare(source, payloads, batch_size=200, settings=settings)

    # then profiles, traits, events and merges are the same
    assert got["events"] == expected["events"]
    assert got["profiles"] == expected["profiles"]
    assert got["merges"] == expected["merges"]
    assert len(got["events"]) == len(payloads)


# --- generated event streams ------------------------------------------------------------------

PEOPLE = range(4)
NAMES = ["Ann", "Bob", "Cleo", "Dan"]


def _call(kind: str, person: int, anon: int, other: int) -> dict:
    anonymous_id, user_id = f"anon-{person}-{anon}", f"user-{person}"
    email = f"p{person}@example.com"
    if kind == "track_anon":
        return {"type": "track", "anonymousId": anonymous_id, "event": "Product Viewed"}
    if kind == "track_user":
        return {"type": "track", "userId": user_id, "event": "Product Viewed"}
    if kind == "identify":
        return {
            "type": "identify",
            "userId": user_id,
            "anonymousId": anonymous_id,
            "traits": {"email": email, "first_name": NAMES[person]},
        }
    if kind == "identify_email":
        return {"type": "identify", "anonymousId": anonymous_id, "traits": {"email": email}}
    if kind == "contradiction":  # someone else's first name with this person's email
        return {"type": "identify", "anonymousId": anonymous_id, "traits": {"email": email, "first_name": NAMES[other]}}
    if kind == "alias":
        return {"type": "alias", "userId": user_id, "previousId": anonymous_id}
    return {"type": "page", "anonymousId": anonymous_id, "userId": user_id, "name": "Home"}


calls_strategy = st.lists(
    st.tuples(
        st.sampled_from(["track_anon", "track_user", "identify", "identify_email", "contradiction", "alias", "page"]),
        st.sampled_from(list(PEOPLE)),
        st.integers(0, 2),
        st.sampled_from(list(PEOPLE)),
    ),
    min_size=1,
    max_size=30,
)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=calls_strategy, batch_size=st.sampled_from([1, 3, 8, 50]))
def test_generated_streams_stitch_through_intake_as_calls_one_by_one(stream, batch_size, one_partition, settings):
    # given a generated stream of calls of a few people (shared devices, aliases, contradictions)
    source = oracle.source_for_examples()
    payloads = []
    for i, (kind, person, anon, other) in enumerate(stream):
        payload = _call(kind, person, anon, other)
        payload["messageId"] = f"m-{i}"
        payload["timestamp"] = (T0 + timedelta(minutes=i)).isoformat()
        payloads.append(payload)

    # when stitched through intake in batches of batch_size and call by call
    expected, got = compare(source, payloads, batch_size=batch_size, settings=settings)

    # then profiles, traits, events and (by the rule) merges are the same
    assert got["events"] == expected["events"]
    assert got["profiles"] == expected["profiles"]
    assert got["merges"] == expected["merges"]
