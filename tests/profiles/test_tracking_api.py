"""The Segment-compatible tracking API: validation, durability, idempotency, clock skew, context."""

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from profiles.models import Event, Identifier, Profile
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(write_key):
    return writer(write_key)


def error_fields(response) -> dict:
    assert response.status_code == 400, response.content
    return response.json()["error"]["fields"]


def test_identify_creates_a_profile_with_identifiers_and_traits(client):
    response = call(
        client,
        "identify",
        userId="u1",
        anonymousId="a1",
        traits={"email": " Ann.Lee+shop@GMail.com ", "first_name": "Ann", "phone": "07911 123456"},
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    profile = Profile.objects.get()
    assert profile.traits["first_name"] == "Ann"
    assert set(profile.identifiers.values_list("kind", "value")) == {
        ("user_id", "u1"),
        ("anonymous_id", "a1"),
        ("email", "annlee@gmail.com"),
        ("phone", "+447911123456"),
    }


@pytest.mark.parametrize("kind", ["track", "page", "screen", "group", "alias"])
def test_every_call_type_is_stored(client, kind):
    payload = {"userId": "u1", "event": "Clicked", "name": "Home", "groupId": "g1", "previousId": "anon-9"}
    assert call(client, kind, **payload).status_code == 200
    assert Event.objects.get().type == kind


def test_short_paths_of_analytics_js_work(client):
    assert client.post("/v1/t", {"userId": "u", "event": "E"}, format="json").status_code == 200


def test_same_message_id_is_stored_once(client):
    for _ in range(3):
        response = call(client, "track", userId="u1", event="Viewed", messageId="m-1")
    assert response.json() == {"success": True, "accepted": 0, "duplicates": 1}
    assert Event.objects.count() == 1


def test_retried_batch_stores_nothing_twice(client):
    events = [{"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"m{i}"} for i in range(5)]
    first = batch(client, *[dict(e) for e in events]).json()
    again = batch(client, *[dict(e) for e in events]).json()
    assert (first["accepted"], again["accepted"], again["duplicates"]) == (5, 0, 5)
    assert Event.objects.count() == 5


def test_event_without_message_id_gets_a_server_id(client):
    client.post("/v1/track", {"userId": "u", "event": "E"}, format="json")
    assert Event.objects.get().message_id.startswith("cdp-")


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"userId": "u", "event": "E", "type": "x"}, None, None),
        ({"event": "E"}, "userId", "Either userId or anonymousId is required."),
        ({"userId": "u"}, "event", "A track call needs the event name."),
        (
            {"userId": "u", "event": "E", "timestamp": "yesterday"},
            "timestamp",
            "Not an ISO-8601 date-time: 'yesterday'.",
        ),
        ({"userId": "u", "event": "E", "properties": [1]}, "properties", "Must be a JSON object."),
        ({"userId": "u", "event": "E", "context": "x"}, "context", "Must be a JSON object."),
        ({"userId": "x" * 256, "event": "E"}, "userId", "Longer than 255 characters."),
        ({"userId": {"a": 1}, "event": "E"}, "userId", "Must be a string or a number."),
    ],
)
def test_invalid_calls_get_field_messages(client, payload, field, message):
    response = client.post("/v1/track", payload, format="json")
    if field is None:  # the endpoint decides the type; a stray "type" is ignored
        assert response.status_code == 200
        return
    assert error_fields(response) == {field: [message]}


def test_unknown_type_in_a_batch_is_reported(client):
    response = batch(client, {"type": "purchase", "userId": "u"})
    assert error_fields(response) == {
        "batch.0.type": ["Unknown type 'purchase'; expected one of identify, track, page, screen, alias, group."]
    }


def test_traits_must_be_an_object(client):
    assert error_fields(call(client, "identify", userId="u", traits="vip")) == {"traits": ["Must be a JSON object."]}


def test_event_over_32kb_is_rejected(client):
    response = call(client, "track", userId="u", event="E", properties={"blob": "x" * 33_000})
    assert "32 KB" in error_fields(response)["non_field_errors"][0]


def test_batch_over_500kb_is_rejected_and_nothing_stored(client):
    events = [{"type": "track", "userId": "u", "event": "E", "properties": {"p": "x" * 20_000}} for _ in range(30)]
    response = batch(client, *events)
    assert "500 KB" in error_fields(response)["body"][0]
    assert Event.objects.count() == 0


def test_invalid_json_is_400(client):
    response = client.post("/v1/track", data="{oops", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_wrong_content_type_is_400(client):
    response = client.post("/v1/track", data="userId=u", content_type="application/x-www-form-urlencoded")
    assert error_fields(response) == {
        "content_type": ["Send JSON (Content-Type: application/json), not 'application/x-www-form-urlencoded'."]
    }


def test_text_plain_and_gzip_bodies_are_accepted(client):
    body = json.dumps({"userId": "u", "event": "Beacon"}).encode()
    assert client.post("/v1/track", data=body, content_type="text/plain").status_code == 200
    response = client.post(
        "/v1/track",
        data=gzip.compress(json.dumps({"userId": "u", "event": "Zipped"}).encode()),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 200
    assert set(Event.objects.values_list("name", flat=True)) == {"Beacon", "Zipped"}


def test_batch_stores_good_events_and_reports_bad_ones_by_index(client):
    response = batch(
        client,
        {"type": "track", "userId": "u", "event": "Ok"},
        {"type": "track", "event": "NoId"},
        {"type": "page", "anonymousId": "a", "name": "Home"},
        "not an object",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["accepted"]) == (False, 2)
    assert body["errors"] == [
        {"index": 1, "fields": {"userId": ["Either userId or anonymousId is required."]}},
        {"index": 3, "fields": {"non_field_errors": ["Each event must be a JSON object."]}},
    ]
    assert Event.objects.count() == 2


def test_write_key_is_required_and_secret_key_cannot_send(api_client, secret_key):
    assert api_client.post("/v1/track", {"userId": "u", "event": "E"}, format="json").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    assert api_client.post("/v1/track", {"userId": "u", "event": "E"}, format="json").status_code == 403


def test_clock_skew_is_corrected_like_segment(client):
    # the client's clock is 1 hour behind: it stamps the event and sends it 10 s later
    client_now = datetime.now(UTC) - timedelta(hours=1)
    timestamp = client_now - timedelta(seconds=10)
    call(client, "track", userId="u", event="E", timestamp=timestamp.isoformat(), sentAt=client_now.isoformat())
    event = Event.objects.get()
    assert event.original_timestamp == timestamp
    assert event.sent_at == client_now
    assert abs((event.received_at - event.occurred_at) - timedelta(seconds=10)) < timedelta(seconds=1)


def test_batch_sent_at_applies_to_its_events(client):
    client_now = datetime.now(UTC) + timedelta(hours=2)  # clock ahead
    batch(
        client,
        {"type": "track", "userId": "u", "event": "E", "timestamp": (client_now - timedelta(minutes=1)).isoformat()},
        sentAt=client_now.isoformat(),
    )
    event = Event.objects.get()
    assert abs((event.received_at - event.occurred_at) - timedelta(minutes=1)) < timedelta(seconds=1)


def test_no_timestamp_means_received_time(client):
    call(client, "track", userId="u", event="E")
    event = Event.objects.get()
    assert event.occurred_at == event.received_at and event.original_timestamp is None


@pytest.mark.parametrize(
    ("context", "device_type"),
    [
        ({"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"}, "mobile"),
        ({"userAgent": "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)"}, "tablet"),
        ({"userAgent": "Mozilla/5.0 (Linux; Android 14; SM-T970) AppleWebKit/537.36 Safari/537.36"}, "tablet"),
        ({"userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36"}, "mobile"),
        ({"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"}, "desktop"),
        ({"device": {"type": "ios", "model": "iPhone15,2"}}, "mobile"),
        ({}, ""),
    ],
)
def test_device_type_is_derived(client, context, device_type):
    call(client, "track", userId="u", event="E", context=context)
    assert Event.objects.get().device_type == device_type


def test_local_hour_comes_from_the_customers_timezone(client):
    call(
        client,
        "track",
        userId="u",
        event="E",
        timestamp="2026-06-01T18:30:00Z",
        context={"timezone": "Europe/Berlin", "ip": "203.0.113.9", "locale": "de-DE", "page": {"path": "/"}},
    )
    event = Event.objects.get()
    assert event.local_hour == 20
    assert event.context["ip"] == "203.0.113.9" and event.context["page"] == {"path": "/"}


def test_accepted_events_are_committed_even_when_redis_is_down(client, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    response = call(client, "track", userId="u", event="E")
    assert response.status_code == 200
    assert Event.objects.count() == 1
    from profiles.models import PendingWork

    assert PendingWork.objects.count() == 1  # the follow-up work waits for the sweep


def test_identifiers_unique_per_kind(client):
    call(client, "identify", userId="u1", traits={"email": "a@example.org"})
    call(client, "identify", userId="u1", traits={"email": "A@Example.org"})
    assert Identifier.objects.filter(kind="email").count() == 1


def test_page_category_sent_beside_the_name_is_kept(client):
    call(client, "page", userId="u", name="Shoes", category="Catalog", properties={"path": "/shoes"})
    assert Event.objects.get().properties == {"path": "/shoes", "category": "Catalog"}
