"""The profiles read API: a profile, lookup by identifier, a profile's events (secret key)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles import selectors
from profiles.models import Event, Identifier, Profile
from profiles.services import profile_merge, traits_refresh
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db

LOOKUP_KINDS = "email, phone, user_id, anonymous_id, loyalty_id"


@pytest.fixture
def client(write_key):
    return writer(write_key)


def profile_of(kind: str, value: str) -> Profile:
    return Identifier.objects.get(kind=kind, value=value).profile


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return body["error"]


def track(user_id: str, name: str, at: str, **extra) -> dict:
    return {"type": "track", "userId": user_id, "event": name, "timestamp": at, **extra}


# --- detail ----------------------------------------------------------------------------------------


def test_detail_shows_traits_computed_traits_and_identifiers(client, secret_client):
    # given a profile with identifiers, an order and freshly computed traits
    call(
        client,
        "identify",
        userId="u1",
        timestamp="2024-05-01T10:00:00Z",
        traits={"email": "Ann.Lee+shop@GMail.com", "first_name": "Ann", "phone": "07911 123456", "loyalty_id": "L-1"},
    )
    call(
        client,
        "track",
        userId="u1",
        event="Order Completed",
        properties={"revenue": 42.5},
        timestamp="2024-05-02T09:30:00Z",
    )
    profile = profile_of("user_id", "u1")
    traits_refresh(profile_ids=[profile.pk], now=datetime(2024, 5, 10, tzinfo=UTC))
    profile.refresh_from_db()

    # when it is read
    response = secret_client.get(f"/api/v1/profiles/{profile.pk}/")

    # then everything is there, identifiers ordered by kind
    assert response.status_code == 200
    created = {i.kind: iso(i.created_at) for i in profile.identifiers.all()}
    assert response.json() == {
        "id": str(profile.pk),
        "requested_id": str(profile.pk),
        "requested_id_merged": False,
        "traits": {
            "email": "Ann.Lee+shop@GMail.com",
            "first_name": "Ann",
            "phone": "07911 123456",
            "loyalty_id": "L-1",
        },
        "computed": profile.computed,
        "computed_at": "2024-05-10T00:00:00Z",
        "identifiers": [
            {"kind": "email", "value": "annlee@gmail.com", "created_at": created["email"]},
            {"kind": "loyalty_id", "value": "L-1", "created_at": created["loyalty_id"]},
            {"kind": "phone", "value": "+447911123456", "created_at": created["phone"]},
            {"kind": "user_id", "value": "u1", "created_at": created["user_id"]},
        ],
        "first_seen_at": "2024-05-01T10:00:00Z",
        "last_seen_at": "2024-05-02T09:30:00Z",
        "intake_pending": 0,
        "intake_lag_seconds": None,
    }
    computed = response.json()["computed"]
    assert (computed["orders"], computed["recency_days"], computed["events"]) == (1, 7, 2)


def test_detail_costs_the_same_queries_however_many_identifiers_or_merges(client, secret_client):
    # given a profile with one identifier, one with seven (one of them from a merge), and a merged-away id
    call(client, "identify", userId="small")
    call(client, "identify", userId="big", anonymousId="a1", traits={"email": "b@example.com", "loyalty_id": "L"})
    for anon in ("a2", "a3"):
        call(client, "alias", userId="big", previousId=anon)
    small, big = profile_of("user_id", "small"), profile_of("user_id", "big")
    call(client, "identify", anonymousId="gone")
    profile_merge(winner=big, loser=profile_of("anonymous_id", "gone"), reason="manual")
    gone = Profile.objects.get(merged_into=big)
    assert (small.identifiers.count(), big.identifiers.count()) == (1, 7)

    # when each is read, then: key lookup, profile (+ survivor, joined), identifiers, calls still in intake
    for profile_id in (small.pk, big.pk, gone.pk):
        with CaptureQueriesContext(connection) as queries:
            assert secret_client.get(f"/api/v1/profiles/{profile_id}/").status_code == 200
        assert len(queries) == 4, [q["sql"] for q in queries]


# --- merged-away ids ---------------------------------------------------------------------------------


def test_merged_away_id_answers_with_the_survivor_and_says_so(client, secret_client):
    # given two profiles, one merged into the other
    call(client, "identify", anonymousId="anon-a", traits={"first_name": "Ann"}, timestamp="2024-01-01T00:00:00Z")
    call(client, "identify", userId="u-b", timestamp="2024-02-01T00:00:00Z")
    loser, winner = profile_of("anonymous_id", "anon-a"), profile_of("user_id", "u-b")
    profile_merge(winner=winner, loser=loser, reason="manual")

    # when the merged-away id is read
    merged = secret_client.get(f"/api/v1/profiles/{loser.pk}/").json()
    live = secret_client.get(f"/api/v1/profiles/{winner.pk}/").json()

    # then the survivor answers, flagged; the survivor's own id is not flagged
    assert (merged["id"], merged["requested_id"], merged["requested_id_merged"]) == (
        str(winner.pk),
        str(loser.pk),
        True,
    )
    assert [(i["kind"], i["value"]) for i in merged["identifiers"]] == [("anonymous_id", "anon-a"), ("user_id", "u-b")]
    assert (merged["traits"], merged["first_seen_at"]) == ({"first_name": "Ann"}, "2024-01-01T00:00:00Z")
    assert (live["id"], live["requested_id"], live["requested_id_merged"]) == (str(winner.pk), str(winner.pk), False)


def test_merged_away_id_lists_the_survivors_events(client, secret_client):
    # given events on two profiles that are then merged
    batch(client, track("u-a", "A", "2024-01-01T00:00:00Z", messageId="ma"))
    batch(client, track("u-b", "B", "2024-01-02T00:00:00Z", messageId="mb"))
    loser, winner = profile_of("user_id", "u-a"), profile_of("user_id", "u-b")
    profile_merge(winner=winner, loser=loser, reason="manual")

    # when the merged-away id's events are read
    response = secret_client.get(f"/api/v1/profiles/{loser.pk}/events/")

    # then they are the survivor's, newest first
    assert [e["message_id"] for e in response.json()["results"]] == ["mb", "ma"]


def test_a_chain_of_merges_is_followed(client, secret_client):
    # given an old row that points at a profile that was itself merged away later (not flat)
    for user_id in ("u1", "u2", "u3"):
        call(client, "identify", userId=user_id)
    first, middle, last = (profile_of("user_id", u) for u in ("u1", "u2", "u3"))
    profile_merge(winner=last, loser=middle, reason="manual")
    Profile.objects.filter(pk=first.pk).update(merged_into=middle)

    # when the first id is read, then the live end of the chain answers
    body = secret_client.get(f"/api/v1/profiles/{first.pk}/").json()
    assert (body["id"], body["requested_id"], body["requested_id_merged"]) == (str(last.pk), str(first.pk), True)


def test_a_merge_cycle_is_refused_not_looped(client):
    # given two rows pointing at each other (corrupt data)
    call(client, "identify", userId="u1")
    call(client, "identify", userId="u2")
    a, b = profile_of("user_id", "u1"), profile_of("user_id", "u2")
    Profile.objects.filter(pk=a.pk).update(merged_into=b)
    Profile.objects.filter(pk=b.pk).update(merged_into=a)

    # when either is resolved, then it stops with an error instead of looping
    with pytest.raises(selectors.MergeChainBroken):
        selectors.profile_get_live(profile_id=a.pk)


# --- lookup ----------------------------------------------------------------------------------------


@pytest.fixture
def ann(client) -> Profile:
    call(
        client,
        "identify",
        userId="user-7",
        anonymousId="anon-7",
        traits={"email": "ann.lee@gmail.com", "phone": "+44 7911 123456", "loyalty_id": "L-77"},
    )
    call(client, "identify", userId="someone-else", traits={"email": "bob@example.com"})
    return profile_of("user_id", "user-7")


@pytest.mark.parametrize(
    "query",
    [
        "email=%20Ann.Lee%2Bx@GMAIL.com",
        "email=annlee@googlemail.com",
        "phone=07911%20123456",
        "phone=%2B447911123456",
        "user_id=%20user-7%20",
        "anonymous_id=anon-7",
        "loyalty_id=L-77",
    ],
)
def test_lookup_by_each_kind_normalises_like_ingestion(ann, secret_client, query):
    # when looking up by any of ann's identifiers, written as a client might
    response = secret_client.get(f"/api/v1/profiles/?{query}")

    # then exactly ann comes back, in the detail shape
    assert response.status_code == 200
    body = response.json()
    assert [(p["id"], p["requested_id"], p["requested_id_merged"]) for p in body] == [(str(ann.pk), str(ann.pk), False)]
    assert {(i["kind"], i["value"]) for i in body[0]["identifiers"]} == {
        ("anonymous_id", "anon-7"),
        ("email", "annlee@gmail.com"),
        ("loyalty_id", "L-77"),
        ("phone", "+447911123456"),
        ("user_id", "user-7"),
    }


@pytest.mark.parametrize(
    "query",
    ["email=nobody@example.com", "email=not-an-email", "phone=0000000000", "user_id=null", "loyalty_id=L-78"],
)
def test_lookup_of_an_unknown_or_junk_value_is_an_empty_list(ann, secret_client, query):
    response = secret_client.get(f"/api/v1/profiles/?{query}")
    assert (response.status_code, response.json()) == (200, [])


def test_lookup_of_a_merged_away_profiles_identifier_finds_the_survivor(client, secret_client):
    # given a profile whose email moved to the survivor in a merge
    call(client, "identify", anonymousId="anon-1", traits={"email": "cy@example.com"})
    call(client, "identify", userId="u-cy")
    loser, winner = profile_of("anonymous_id", "anon-1"), profile_of("user_id", "u-cy")
    profile_merge(winner=winner, loser=loser, reason="manual")

    # when looking it up by that email, then the survivor is found
    body = secret_client.get("/api/v1/profiles/?email=cy@example.com").json()
    assert [(p["id"], p["requested_id_merged"]) for p in body] == [(str(winner.pk), False)]


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("", {"non_field_errors": [f"Give one of {LOOKUP_KINDS}."]}),
        ("name=Ann", {"non_field_errors": [f"Give one of {LOOKUP_KINDS}."]}),
        (
            "email=a@example.com&user_id=u1",
            {"non_field_errors": [f"Give only one of {LOOKUP_KINDS}; got email, user_id."]},
        ),
        ("email=", {"email": ["This field may not be blank."]}),
        ("user_id=a%00b", {"user_id": ["Null characters are not allowed."]}),
    ],
)
def test_a_bad_lookup_is_400_with_field_messages(secret_client, query, fields):
    error = error_of(secret_client.get(f"/api/v1/profiles/?{query}"), 400, "invalid")
    assert error["fields"] == fields


# --- events ----------------------------------------------------------------------------------------


def test_events_paginate_newest_first_without_duplicates_or_gaps(client, secret_client):
    # given six events, three of them at the same instant (ties straddle page boundaries)
    times = ["10:00", "10:01", "10:01", "10:01", "10:02", "10:03"]
    batch(client, *[track("u1", f"E{i}", f"2024-05-01T{t}:00Z", messageId=f"m{i}") for i, t in enumerate(times, 1)])
    profile = profile_of("user_id", "u1")

    # when reading pages of two, following next links
    pages, url = [], f"/api/v1/profiles/{profile.pk}/events/?page_size=2"
    while url:
        body = secret_client.get(url).json()
        pages.append([e["message_id"] for e in body["results"]])
        url = body["next"]

    # then three pages, newest first, ties by newest id, every event exactly once
    assert pages == [["m6", "m5"], ["m4", "m3"], ["m2", "m1"]]


def test_event_shape(client, secret_client):
    # given one page view sent with a clock skew of one minute
    call(
        client,
        "page",
        userId="u1",
        anonymousId="a1",
        name="Home",
        properties={"path": "/"},
        context={"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", "timezone": "Europe/Paris"},
        timestamp="2024-05-01T10:00:00Z",
        messageId="m-1",
    )
    event = Event.objects.get()
    profile = profile_of("user_id", "u1")

    # when it is listed
    body = secret_client.get(f"/api/v1/profiles/{profile.pk}/events/").json()

    # then every field is there
    assert body == {
        "next": None,
        "previous": None,
        "results": [
            {
                "id": event.pk,
                "message_id": "m-1",
                "type": "page",
                "name": "Home",
                "properties": {"path": "/"},
                "traits": {},
                "context": event.context,
                "occurred_at": "2024-05-01T10:00:00Z",
                "received_at": iso(event.received_at),
                "original_timestamp": "2024-05-01T10:00:00Z",
                "sent_at": None,
                "device_type": event.device_type,
                "local_hour": 12,
                "user_id": "u1",
                "anonymous_id": "a1",
            }
        ],
    }
    assert event.context["timezone"] == "Europe/Paris"


@pytest.fixture
def day(client) -> Profile:
    batch(
        client,
        track("u1", "Product Viewed", "2024-05-01T10:00:00Z", messageId="viewed"),
        track("u1", "Order Completed", "2024-05-01T11:00:00Z", messageId="ordered"),
        {"type": "page", "userId": "u1", "name": "Home", "timestamp": "2024-05-01T12:00:00Z", "messageId": "paged"},
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-01T13:00:00Z", "messageId": "identified"},
    )
    return profile_of("user_id", "u1")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["identified", "paged", "ordered", "viewed"]),
        ("name=Order%20Completed", ["ordered"]),
        ("name=Home", ["paged"]),
        ("type=page", ["paged"]),
        ("type=track", ["ordered", "viewed"]),
        ("since=2024-05-01T11:00:00Z", ["identified", "paged", "ordered"]),
        ("until=2024-05-01T11:00:00Z", ["viewed"]),
        ("since=2024-05-01T11:00:00Z&until=2024-05-01T13:00:00Z", ["paged", "ordered"]),
        (f"since={quote('2024-05-01T12:00:00+01:00')}", ["identified", "paged", "ordered"]),
        ("type=track&since=2024-05-01T10:30:00Z", ["ordered"]),
        ("name=Nothing", []),
    ],
)
def test_events_filters(day, secret_client, query, expected):
    response = secret_client.get(f"/api/v1/profiles/{day.pk}/events/?{query}")
    assert response.status_code == 200
    assert [e["message_id"] for e in response.json()["results"]] == expected


def test_page_size_is_capped_at_500(client, secret_client):
    # given 501 events
    batch(client, *[track("u1", "E", f"2024-05-01T10:00:{i % 60:02d}Z") for i in range(501)])
    profile = profile_of("user_id", "u1")

    # when asking for pages of 1000
    body = secret_client.get(f"/api/v1/profiles/{profile.pk}/events/?page_size=1000").json()

    # then a page holds 500, and there is more
    assert len(body["results"]) == 500
    assert body["next"] is not None


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        (
            "since=yesterday",
            {
                "since": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        (
            "until=2024-13-01",
            {
                "until": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        ("since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z", {"until": ["Must be later than since."]}),
        ("type=click", {"type": ['"click" is not a valid choice.']}),
        ("name=", {"name": ["This field may not be blank."]}),
    ],
)
def test_bad_event_filters_are_400_with_field_messages(day, secret_client, query, fields):
    error = error_of(secret_client.get(f"/api/v1/profiles/{day.pk}/events/?{query}"), 400, "invalid")
    assert error["fields"] == fields


def test_a_forged_cursor_is_404(day, secret_client):
    error = error_of(secret_client.get(f"/api/v1/profiles/{day.pk}/events/?cursor=bm9wZQ"), 404, "not_found")
    assert error["message"] == "Invalid cursor"


# --- who may read, and unknown ids -------------------------------------------------------------------

PATHS = ["/api/v1/profiles/?user_id=u1", "/api/v1/profiles/{pk}/", "/api/v1/profiles/{pk}/events/"]


@pytest.mark.parametrize("path", PATHS)
def test_no_key_is_401(day, api_client, path):
    error_of(api_client.get(path.format(pk=day.pk)), 401, "not_authenticated")


@pytest.mark.parametrize("path", PATHS)
def test_write_key_is_403(day, client, path):
    error = error_of(client.get(path.format(pk=day.pk)), 403, "permission_denied")
    assert "secret key" in error["message"]


@pytest.mark.parametrize("suffix", ["", "events/"])
@pytest.mark.parametrize(
    "profile_id", ["5b0e6c9c-0000-4000-8000-000000000000", "not-a-uuid", "5b0e6c9c", "1", "%20", "5b0e6c9c-0000-4000"]
)
def test_unknown_or_malformed_profile_id_is_404(day, secret_client, profile_id, suffix):
    error = error_of(secret_client.get(f"/api/v1/profiles/{profile_id}/{suffix}"), 404, "not_found")
    assert error == {"code": "not_found", "message": "Not found.", "fields": {}}


# --- calls still in the intake log ---------------------------------------------------------------


@pytest.mark.intake_async
def test_a_profile_with_calls_still_in_intake_says_so_until_they_are_stitched(client, secret_client):
    from profiles.tracking.worker import intake_drain

    # given a known person (stitched) who then sends two more calls, and someone else who sends one
    call(client, "identify", userId="u-lag", anonymousId="a-lag", traits={"first_name": "Lea"})
    call(client, "identify", userId="u-other")
    intake_drain()
    profile = profile_of("user_id", "u-lag")
    call(client, "track", anonymousId="a-lag", event="Product Viewed")
    call(client, "identify", userId="u-lag", traits={"first_name": "Leah"})
    call(client, "track", userId="u-other", event="Product Viewed")

    # when the profile is read before the workers stitched them
    before = secret_client.get(f"/api/v1/profiles/{profile.pk}/").json()
    found = secret_client.get("/api/v1/profiles/?user_id=u-lag").json()

    # then it says two calls are waiting, and how long the oldest has waited; traits are not there yet
    assert (before["intake_pending"], before["traits"]) == (2, {"first_name": "Lea"})
    assert before["intake_lag_seconds"] >= 0
    assert found[0]["intake_pending"] == 2

    # and once stitched, nothing waits and the traits are there
    intake_drain()
    after = secret_client.get(f"/api/v1/profiles/{profile.pk}/").json()
    assert (after["intake_pending"], after["intake_lag_seconds"], after["traits"]) == (0, None, {"first_name": "Leah"})
