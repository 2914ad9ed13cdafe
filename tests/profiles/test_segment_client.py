"""The official Segment Python client (segment-analytics-python), unchanged, against a live cdp server.

The client is pointed at ``live_server.url`` with a source's write key, and what it sends goes over
real HTTP to the full Django stack (pytest-django's live server thread rather than gunicorn): Basic
auth, ``POST /v1/batch`` with ``sentAt`` and ``writeKey`` in the body, optionally gzipped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils.dateparse import parse_datetime
from segment.analytics import Client
from segment.analytics import client as segment_client_module
from segment.analytics import request as segment_request_module
from segment.analytics.request import APIError
from segment.analytics.version import VERSION

from profiles.models import Event, Identifier, Profile
from profiles.services import source_create

pytestmark = pytest.mark.django_db(transaction=True)

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
CONTEXT = {"userAgent": IPHONE, "timezone": "Europe/Berlin", "locale": "de-DE", "ip": "203.0.113.9"}
LIBRARY = {"name": "analytics-python", "version": VERSION}  # the client adds this to every context


@pytest.fixture
def write_key() -> str:
    _, raw = source_create(name="python-backend")
    return raw


@pytest.fixture
def errors() -> list:
    return []


def sync_client(live_server, write_key: str, **options) -> Client:
    """One request per call; failures raise ``APIError`` in the caller (no retries)."""
    return Client(write_key, host=live_server.url, sync_mode=True, max_retries=0, timeout=10, **options)


def queued_client(live_server, write_key: str, errors: list, **options) -> Client:
    """The default mode of the library: a consumer thread batches calls; ``flush()`` waits for it."""
    return Client(
        write_key,
        host=live_server.url,
        on_error=lambda exc, batch: errors.append((exc, batch)),
        max_retries=0,
        timeout=10,
        upload_interval=0.05,
        **options,
    )


def stored(message_id: str) -> Event:
    return Event.objects.get(message_id=message_id)


def assert_skew_corrected(event: Event, sent: dict) -> None:
    """occurred_at = timestamp + (receivedAt - sentAt), as Segment does; the client's values are kept."""
    assert event.original_timestamp == parse_datetime(sent["timestamp"])
    assert event.sent_at is not None
    assert event.received_at - timedelta(seconds=5) < event.sent_at <= event.received_at
    assert event.occurred_at == event.original_timestamp + (event.received_at - event.sent_at)


def test_every_call_of_the_client_is_stored_exactly_on_one_profile(live_server, write_key):
    # given the official client in sync mode, a visitor browses anonymously, then signs in
    analytics = sync_client(live_server, write_key)
    anon, user = "anon-7f3a", "u-42"
    sent = {}
    _, sent["page"] = analytics.page(
        anonymous_id=anon, name="Pricing", properties={"path": "/pricing", "title": "Pricing"}, context=CONTEXT
    )
    _, sent["viewed"] = analytics.track(
        anonymous_id=anon,
        event="Product Viewed",
        properties={"product_id": "sku-1", "category": "outdoor", "price": 19.99, "currency": "EUR"},
        context=CONTEXT,
    )
    _, sent["identify"] = analytics.identify(
        user_id=user, traits={"email": "Ann.Lee@Example.com", "first_name": "Ann"}, context=CONTEXT
    )
    # when the app aliases the anonymous id to the user, and the user keeps going
    _, sent["alias"] = analytics.alias(previous_id=anon, user_id=user)
    _, sent["screen"] = analytics.screen(user_id=user, name="Checkout", properties={"step": 2})
    _, sent["group"] = analytics.group(user_id=user, group_id="acme", traits={"name": "Acme Ltd", "plan": "pro"})
    _, sent["order"] = analytics.track(
        user_id=user,
        event="Order Completed",
        properties={"order_id": "o-1", "revenue": 39.98, "products": [{"product_id": "sku-1", "quantity": 2}]},
    )

    # then every call is one event with the client's messageId, type, name, ids and payload
    events = list(Event.objects.order_by("id"))
    assert [(e.message_id, e.type, e.name, e.user_id, e.anonymous_id) for e in events] == [
        (sent["page"]["messageId"], "page", "Pricing", "", anon),
        (sent["viewed"]["messageId"], "track", "Product Viewed", "", anon),
        (sent["identify"]["messageId"], "identify", "", user, ""),
        (sent["alias"]["messageId"], "alias", "", user, ""),
        (sent["screen"]["messageId"], "screen", "Checkout", user, ""),
        (sent["group"]["messageId"], "group", "", user, ""),
        (sent["order"]["messageId"], "track", "Order Completed", user, ""),
    ]
    assert stored(sent["page"]["messageId"]).properties == {"path": "/pricing", "title": "Pricing"}
    assert stored(sent["viewed"]["messageId"]).properties == {
        "product_id": "sku-1",
        "category": "outdoor",
        "price": 19.99,
        "currency": "EUR",
    }
    assert stored(sent["order"]["messageId"]).properties == {
        "order_id": "o-1",
        "revenue": 39.98,
        "products": [{"product_id": "sku-1", "quantity": 2}],
    }
    assert stored(sent["screen"]["messageId"]).properties == {"step": 2}
    assert stored(sent["identify"]["messageId"]).traits == {"email": "Ann.Lee@Example.com", "first_name": "Ann"}
    assert stored(sent["group"]["messageId"]).traits == {"name": "Acme Ltd", "plan": "pro"}
    # the context is kept as sent, plus the library the client adds; device and local hour are derived
    viewed = stored(sent["viewed"]["messageId"])
    assert viewed.context == {**CONTEXT, "library": LIBRARY}
    assert viewed.device_type == "mobile"
    assert viewed.local_hour == viewed.occurred_at.astimezone(ZoneInfo("Europe/Berlin")).hour
    assert stored(sent["order"]["messageId"]).context == {"library": LIBRARY}

    # and the alias joined the anonymous visitor and the user: one live profile holds every event
    live = Profile.objects.get(merged_into__isnull=True)
    assert set(Event.objects.values_list("profile_id", flat=True)) == {live.pk}
    assert set(Identifier.objects.values_list("profile_id", "kind", "value")) == {
        (live.pk, "anonymous_id", anon),
        (live.pk, "user_id", user),
        (live.pk, "email", "ann.lee@example.com"),
    }
    assert live.traits == {"email": "Ann.Lee@Example.com", "first_name": "Ann"}
    assert Profile.objects.filter(merged_into=live).count() == 1  # the user's own profile, merged by the alias

    # and every timestamp went through clock-skew correction with the client's own times
    for message in sent.values():
        assert_skew_corrected(stored(message["messageId"]), message)


class ClockOneHourAhead(datetime):
    """The client machine's clock: one hour ahead of the server's."""

    @classmethod
    def now(cls, tz=None):
        return super().now(tz) + timedelta(hours=1)


def test_a_client_with_a_wrong_clock_gets_server_time(live_server, write_key, monkeypatch):
    # given a client machine whose clock is one hour ahead (the library reads it for timestamp and sentAt)
    monkeypatch.setattr(segment_client_module, "datetime", ClockOneHourAhead)
    monkeypatch.setattr(segment_request_module, "datetime", ClockOneHourAhead)
    analytics = sync_client(live_server, write_key)

    # when it tracks one event now and one it recorded five minutes ago (by its own clock)
    before = datetime.now(UTC)
    _, now_msg = analytics.track(user_id="u-1", event="Now")
    _, earlier_msg = analytics.track(
        user_id="u-1", event="Earlier", timestamp=ClockOneHourAhead.now(UTC) - timedelta(minutes=5)
    )
    after = datetime.now(UTC)

    # then the client's times are kept, and occurred_at is on the server's clock
    now_event, earlier_event = stored(now_msg["messageId"]), stored(earlier_msg["messageId"])
    assert now_event.original_timestamp > after + timedelta(minutes=59)
    assert before - timedelta(seconds=1) <= now_event.occurred_at <= after
    expected_earlier = earlier_event.received_at - timedelta(minutes=5)
    assert abs(earlier_event.occurred_at - expected_earlier) < timedelta(seconds=1)
    for event, message in ((now_event, now_msg), (earlier_event, earlier_msg)):
        assert event.original_timestamp == parse_datetime(message["timestamp"])
        assert event.occurred_at == event.original_timestamp + (event.received_at - event.sent_at)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_queued_mode_uploads_batches_and_flush_waits_for_them(live_server, write_key, errors, gzip):
    # given the library's default (queued) mode, batching up to 100 calls per request
    analytics = queued_client(live_server, write_key, errors, gzip=gzip)

    # when an app sends 250 calls for 50 users and flushes
    sent = []
    for i in range(250):
        user = f"user-{i % 50}"
        if i < 50:
            ok, msg = analytics.identify(user_id=user, traits={"email": f"{user}@example.org", "first_name": f"N{i}"})
        else:
            ok, msg = analytics.track(user_id=user, event="Product Viewed", properties={"product_id": f"sku-{i}"})
        assert ok
        sent.append(msg)
    analytics.flush()
    analytics.join()

    # then nothing failed and every call is stored once, with its messageId, on its user's profile
    assert errors == []
    assert set(Event.objects.values_list("message_id", flat=True)) == {m["messageId"] for m in sent}
    assert Event.objects.count() == 250
    assert Profile.objects.count() == 50
    assert Identifier.objects.filter(kind="email").count() == 50
    for message in (sent[0], sent[49], sent[50], sent[249]):
        event = stored(message["messageId"])
        assert event.user_id == message["userId"]
        assert Identifier.objects.get(kind="user_id", value=message["userId"]).profile_id == event.profile_id
        assert_skew_corrected(event, message)
    assert stored(sent[249]["messageId"]).properties == {"product_id": "sku-249"}


def test_a_message_the_client_sends_twice_is_stored_once(live_server, write_key):
    analytics = sync_client(live_server, write_key)
    for _ in range(2):
        analytics.track(user_id="u-1", event="Order Completed", message_id="order-o-1", properties={"revenue": 5})
    assert list(Event.objects.values_list("message_id", "properties")) == [("order-o-1", {"revenue": 5})]


def test_a_wrong_write_key_is_reported_to_on_error_and_stores_nothing(live_server, write_key, errors):
    # given a client with a write key cdp never issued (the real one exists, for another source)
    analytics = queued_client(live_server, "wk_" + "x" * 40, errors)

    # when it tracks and flushes
    analytics.track(user_id="u-1", event="Product Viewed", properties={"product_id": "sku-1"})
    analytics.identify(user_id="u-1", traits={"email": "ann@example.org"})
    analytics.flush()
    analytics.join()

    # then the library reports one 401 for the batch, with both calls in it, and nothing is stored
    assert len(errors) == 1
    error, failed_batch = errors[0]
    assert isinstance(error, APIError)
    assert error.status == 401
    assert [m["type"] for m in failed_batch] == ["track", "identify"]
    assert (Event.objects.count(), Profile.objects.count(), Identifier.objects.count()) == (0, 0, 0)


def test_a_wrong_write_key_raises_in_sync_mode(live_server, write_key):
    analytics = sync_client(live_server, "wk_" + "x" * 40)
    with pytest.raises(APIError) as raised:
        analytics.track(user_id="u-1", event="Product Viewed")
    assert raised.value.status == 401
    assert Event.objects.count() == 0
