"""The stitch workers' fast path (decision 0061): calls of known people that need no identity work are
stitched set-based, with the same profiles, events, merges, pending marks and consent as the present
path (the same calls stitched with ``CDP_INTAKE_FAST_PATH`` off) and, where the rule allows, as calls
one by one (tests/profiles/oracle.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from consent.models import ConsentRecord, Suppression
from consent.requests import privacy_erase
from profiles.models import Event, Identifier, PendingWork, Profile
from profiles.services import source_create
from profiles.tracking import fastpath, stitch
from profiles.tracking.intake import events_accept
from profiles.tracking.validate import clean_event
from profiles.tracking.worker import intake_stitch_batch
from tests.conftest import celery_quiesce
from tests.profiles import oracle

pytestmark = [pytest.mark.django_db, pytest.mark.intake_async]

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DENY = {"consent": {"categoryPreferences": {"Analytics": False}}}
GRANT = {"consent": {"categoryPreferences": {"Analytics": True}}}


@pytest.fixture
def one_partition(settings):
    settings.CDP_INTAKE_PARTITIONS = 1


@pytest.fixture(autouse=True)
def fast_path_on(settings):
    """The fast path is off by default (decision 0061: it measured more CPU, not less)."""
    settings.CDP_INTAKE_FAST_PATH = True


@pytest.fixture
def fast_taken(monkeypatch):
    """The message ids the fast path was handed (as candidates), in order."""
    taken: list[str] = []
    real = fastpath.stitch_known

    def spy(fast, **kwargs):
        taken.extend(row[3] for row, _, _, _ in fast)
        return real(fast, **kwargs)

    monkeypatch.setattr(fastpath, "stitch_known", spy)
    return taken


def _numbered(calls: list[dict]) -> list[dict]:
    for i, c in enumerate(calls):
        c["messageId"] = f"m-{i}"
        c.setdefault("timestamp", (T0 + timedelta(minutes=i)).isoformat())
    return calls


def outcome(ledger_after: int = 0) -> dict:
    """``oracle.outcome`` and what the fast path writes besides events: pending marks, consent."""
    got = oracle.outcome(internal_merges=set())
    key = {}
    for kind, value, pid in Identifier.objects.values_list("kind", "value", "profile_id"):
        key.setdefault(pid, set()).add((kind, value))
    got["pending"] = {frozenset(key.get(pid, ())) for pid in PendingWork.objects.values_list("profile_id", flat=True)}
    got["consent"] = sorted(
        (frozenset(key.get(pid, ())), purpose, granted)
        for pid, purpose, granted in ConsentRecord.objects.filter(pk__gt=ledger_after).values_list(
            "profile_id", "purpose__key", "granted"
        )
    )
    got["seen"] = {
        frozenset(key.get(pid, ())): (first, last)
        for pid, first, last in Profile.objects.filter(merged_into__isnull=True).values_list(
            "pk", "first_seen_at", "last_seen_at"
        )
    }
    return got


def compare_fast(source, payloads: list[dict], batch_size: int, settings) -> tuple[dict, dict]:
    """The same calls through intake with the fast path off (the present path) and on."""
    settings.CDP_INTAKE_BATCH = batch_size
    results = []
    for on in (False, True):
        settings.CDP_INTAKE_FAST_PATH = on
        oracle.wipe()
        ledger = ConsentRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 0  # append-only
        oracle.intake_run(source, payloads)
        results.append(outcome(ledger))
    settings.CDP_INTAKE_FAST_PATH = True
    return results[0], results[1]


def test_returning_customers_take_the_fast_path_and_match_the_present_path(one_partition, settings, fast_taken):
    # given customers seen in a first batch (a user on a device, an anonymous visitor)
    source, _ = source_create(name="fast")
    first = [
        {"type": "identify", "userId": "u-1", "anonymousId": "a-1", "traits": {"email": "one@example.org"}},
        {"type": "track", "anonymousId": "a-2", "event": "Product Viewed"},
    ]
    # and a second batch of them coming back: page views and tracks with known ids only, a new device
    second = [
        {"type": "page", "userId": "u-1", "anonymousId": "a-1", "name": "Home"},
        {"type": "track", "anonymousId": "a-1", "event": "Product Viewed", "properties": {"sku": "S1"}},
        {"type": "track", "anonymousId": "a-2", "event": "Product Added"},
        {"type": "track", "userId": "u-1", "anonymousId": "a-3", "event": "Cart Viewed"},
        {"type": "screen", "userId": "u-1", "name": "Basket"},
    ]
    calls = _numbered(first + second)

    # when stitched with and without the fast path, and call by call
    present, fast = compare_fast(source, calls, batch_size=len(first), settings=settings)
    oracle.wipe()
    expected = oracle.outcome(internal_merges=oracle.reference_run(source, calls, batch_size=len(first)))

    # then the known-ids calls were the fast path's, the new device's was not, and everything is the same
    assert fast_taken == ["m-2", "m-3", "m-4", "m-6"]
    assert fast == present
    assert {k: fast[k] for k in ("profiles", "events", "merges")} == expected
    # seen times moved (in steps of a minute: 09:06 is within a minute of 09:05) and follow-up work
    # marked for the returning profiles
    u1 = frozenset({("user_id", "u-1"), ("anonymous_id", "a-1"), ("anonymous_id", "a-3"), ("email", "one@example.org")})
    assert fast["seen"][u1] == (T0, T0 + timedelta(minutes=5))
    assert fast["seen"][frozenset({("anonymous_id", "a-2")})] == (T0 + timedelta(minutes=1), T0 + timedelta(minutes=4))
    assert u1 in fast["pending"] and frozenset({("anonymous_id", "a-2")}) in fast["pending"]


def test_a_call_whose_identifiers_span_two_profiles_does_not_take_the_fast_path(one_partition, settings, fast_taken):
    # given a visitor and a user stitched apart
    source, _ = source_create(name="fast")
    first = [
        {"type": "track", "anonymousId": "a-x", "event": "Product Viewed"},
        {"type": "identify", "userId": "u-y", "traits": {"plan": "gold"}},
    ]
    # when a call carries both (the visitor logs in), with a plain page view of each around it
    second = [
        {"type": "page", "anonymousId": "a-x", "name": "Home"},
        {"type": "track", "userId": "u-y", "anonymousId": "a-x", "event": "Signed In"},
        {"type": "page", "userId": "u-y", "name": "Account"},
    ]
    calls = _numbered(first + second)
    present, fast = compare_fast(source, calls, batch_size=len(first), settings=settings)
    oracle.wipe()
    expected = oracle.outcome(internal_merges=oracle.reference_run(source, calls, batch_size=len(first)))

    # then the linking call went through the present path (a merge), the plain ones the fast path
    # (the first seen before the merge, the second after it, both end on the merged profile)
    assert "m-3" not in fast_taken and {"m-2", "m-4"} <= set(fast_taken)
    assert fast == present
    assert {k: fast[k] for k in ("profiles", "events", "merges")} == expected
    merged = frozenset({("anonymous_id", "a-x"), ("user_id", "u-y")})
    assert list(fast["profiles"]) == [merged] and set(fast["events"].values()) == {merged}
    assert sum(fast["merges"].values()) == 1


def test_consent_denied_in_context_or_before_drops_the_persons_calls_as_the_present_path_does(
    one_partition, settings, fast_taken
):
    # given a person who denied analytics in an earlier batch, and one who grants it
    settings.CONSENT_ANALYTICS_DENIAL = "strict"
    source, _ = source_create(name="fast")
    first = [
        {"type": "identify", "userId": "u-no", "traits": {"plan": "a"}},
        {"type": "track", "userId": "u-no", "event": "Product Viewed", "context": DENY},
        {"type": "identify", "userId": "u-yes", "traits": {"plan": "b"}},
        {"type": "identify", "userId": "u-late", "traits": {"plan": "c"}},
    ]
    # when they come back: plain calls, and a person who denies in the middle of the next batch
    second = [
        {"type": "track", "userId": "u-no", "event": "Product Viewed"},
        {"type": "track", "userId": "u-no", "event": "Order Completed"},
        {"type": "track", "userId": "u-yes", "event": "Product Viewed"},
        {"type": "page", "userId": "u-late", "name": "Home"},
        {"type": "track", "userId": "u-late", "event": "Product Viewed", "context": DENY},
        {"type": "page", "userId": "u-late", "name": "Cart"},
        {"type": "page", "userId": "u-yes", "name": "Home", "context": GRANT},
    ]
    calls = _numbered(first + second)
    present, fast = compare_fast(source, calls, batch_size=len(first), settings=settings)

    # then the same calls are stored and the same answers recorded with and without the fast path:
    # nothing more of the person who said no, nothing of the one who said no within the batch
    assert fast == present
    stored = set(fast["events"])
    assert {"m-4", "m-5", "m-7", "m-8", "m-9"}.isdisjoint(stored)
    assert {"m-6", "m-10"} <= stored
    # the calls stating consent were the present path's (it records them)
    assert {"m-8", "m-10"}.isdisjoint(fast_taken) and "m-6" in fast_taken


def test_essential_events_of_a_denied_person_are_kept_by_the_filter_not_dropped_by_the_fast_path(
    one_partition, settings
):
    # given the "essential" policy and a person who denied analytics
    settings.CONSENT_ANALYTICS_DENIAL = "essential"
    source, _ = source_create(name="fast")
    first = [{"type": "track", "userId": "u-e", "event": "Product Viewed", "context": DENY}]
    second = [
        {"type": "track", "userId": "u-e", "event": "Order Completed"},
        {"type": "track", "userId": "u-e", "event": "Product Viewed"},
    ]
    present, fast = compare_fast(source, _numbered(first + second), batch_size=1, settings=settings)
    assert fast == present
    assert "m-1" in fast["events"] and "m-2" not in fast["events"]


def test_calls_of_a_suppressed_identifier_are_dropped_even_where_its_profile_lives_on(one_partition, settings):
    # given a profile whose anonymous id alone was suppressed (an erasure request that named only it)
    source, _ = source_create(name="fast")
    results = []
    for on in (False, True):
        settings.CDP_INTAKE_FAST_PATH = on
        oracle.wipe()
        Suppression.objects.all().delete()
        oracle.intake_run(source, _numbered([{"type": "track", "userId": "u-s", "anonymousId": "a-s", "event": "A"}]))

        # when the person's known-ids calls were accepted just before the suppression was written
        events_accept(
            source=source,
            events=[
                clean_event({"type": "track", "userId": "u-s", "messageId": "x-1", "event": "B"}, received_at=T0),
                clean_event(
                    {"type": "page", "userId": "u-s", "anonymousId": "a-s", "messageId": "x-2"}, received_at=T0
                ),
            ],
            wake=lambda _: None,
        )
        privacy_erase(profile_id=None, extra_identifiers=[("anonymous_id", "a-s")])
        assert Profile.objects.count() == 1 and Suppression.objects.count() == 1
        while intake_stitch_batch() is not None:
            pass
        results.append(set(Event.objects.values_list("message_id", flat=True)))

    # then the call carrying the suppressed id is dropped, the other one stored, on both paths
    assert results[0] == results[1] == {"m-0", "x-1"}


@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stream=st.lists(
        st.tuples(
            st.sampled_from(["page", "track_anon", "track_user", "login", "identify", "deny", "grant", "new_device"]),
            st.integers(0, 2),
            st.integers(0, 1),
        ),
        min_size=1,
        max_size=25,
    ),
    batch_size=st.sampled_from([2, 5, 50]),
)
def test_generated_streams_give_the_same_outcome_with_and_without_the_fast_path(
    stream, batch_size, one_partition, settings
):
    # given a generated stream of a few people's calls (returning, logging in, consent in context)
    source = oracle.source_for_examples()
    calls = [{"type": "identify", "userId": f"u-{p}", "anonymousId": f"a-{p}-0"} for p in range(3)]
    for kind, person, device in stream:
        anon, user = f"a-{person}-{device}", f"u-{person}"
        calls.append(
            {
                "page": {"type": "page", "userId": user, "anonymousId": anon, "name": "Home"},
                "track_anon": {"type": "track", "anonymousId": anon, "event": "Product Viewed"},
                "track_user": {"type": "track", "userId": user, "event": "Product Viewed"},
                "login": {"type": "track", "userId": f"u-{(person + 1) % 3}", "anonymousId": anon, "event": "In"},
                "identify": {"type": "identify", "userId": user, "traits": {"plan": str(device)}},
                "deny": {"type": "track", "userId": user, "event": "Product Viewed", "context": DENY},
                "grant": {"type": "page", "anonymousId": anon, "name": "Home", "context": GRANT},
                "new_device": {"type": "page", "userId": user, "anonymousId": f"a-{person}-9", "name": "Home"},
            }[kind]
        )

    # when stitched through intake with and without the fast path
    present, fast = compare_fast(source, _numbered(calls), batch_size=batch_size, settings=settings)

    # then profiles, events, merges, pending marks, consent and seen times are the same
    assert fast == present


@pytest.mark.django_db(transaction=True)
def test_a_person_erased_between_the_fast_paths_look_and_its_locks_is_not_brought_back(
    one_partition, settings, monkeypatch, fast_taken
):
    # given a known person, and an erasure that commits right after the fast path read who owns the ids
    source, _ = source_create(name="fast")
    celery_quiesce()
    events_accept(
        source=source,
        events=[clean_event({"type": "identify", "userId": "u-gone", "anonymousId": "a-gone", "messageId": "m-0"},
                            received_at=T0)],
        wake=lambda _: None,
    )  # fmt: skip
    intake_stitch_batch()
    owner = Profile.objects.get()
    real_owners_of = stitch.owners_of
    erased = threading.Event()

    def owners_then_erase(identifiers):
        found = real_owners_of(identifiers)
        if not erased.is_set():
            erased.set()

            def erase():
                try:
                    privacy_erase(profile_id=str(owner.pk))
                finally:
                    connection.close()

            worker = threading.Thread(target=erase)
            worker.start()
            worker.join(30)
        return found

    monkeypatch.setattr(stitch, "owners_of", owners_then_erase)

    # when the person's next page view (accepted before the erasure) is stitched
    events_accept(
        source=source,
        events=[clean_event({"type": "page", "userId": "u-gone", "anonymousId": "a-gone", "messageId": "m-1"},
                            received_at=T0)],
        wake=lambda _: None,
    )  # fmt: skip
    intake_stitch_batch()

    # then it was a fast candidate, its profile was gone when locked, and the present path dropped it
    # by the suppression list: nobody came back, nothing is waiting
    assert erased.is_set() and fast_taken == ["m-1"]
    assert not Profile.objects.exists() and not Identifier.objects.exists() and not Event.objects.exists()
    assert Suppression.objects.count() == 2
    assert intake_stitch_batch() is None


def test_the_demo_store_through_the_fast_path_equals_calls_one_by_one(one_partition, settings, fast_taken):
    # given the demo shop's traffic of 25 customers over 10 days (identity cases included), fast path on
    from cdp.demo.store import demo_store_payloads

    source, _ = source_create(name="demo-fast")
    _, payloads = demo_store_payloads(customers=25, days=10, seed=7, now=T0)

    # when stitched through intake (batches of 200) and call by call
    settings.CDP_INTAKE_BATCH = 200
    oracle.wipe()
    expected = oracle.outcome(internal_merges=oracle.reference_run(source, payloads, batch_size=200))
    oracle.wipe()
    got = oracle.outcome(internal_merges=oracle.intake_run(source, payloads))

    # then profiles, events and merges are the same, and the fast path took part
    assert got == expected
    assert len(got["events"]) == len(payloads) and fast_taken
