"""Consent on the way in: the banner endpoint, consent in event context, analytics enforcement."""

from __future__ import annotations

import pytest
from django.test import override_settings

from consent.models import ConsentRecord
from consent.selectors import consent_granted
from profiles.models import Event, Identifier, PendingWork
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db


def _profile_of(kind: str, value: str):
    return Identifier.objects.get(kind=kind, value=value).profile_id


def _consent(prefs: dict) -> dict:
    return {"consent": {"categoryPreferences": prefs}}


def test_banner_records_answers_with_hashed_ip(write_key):
    client = writer(write_key)
    response = client.post(
        "/v1/consent",
        {
            "anonymousId": "anon-1",
            "purposes": {"analytics": True, "personalisation": True, "marketing": False},
            "policyVersion": "7",
            "bannerId": "banner-a",
        },
        format="json",
        REMOTE_ADDR="203.0.113.9",
        HTTP_USER_AGENT="Mozilla/5.0 test",
    )
    assert response.status_code == 200, response.content
    assert response.json()["recorded"] == 3
    pid = _profile_of("anonymous_id", "anon-1")
    assert str(pid) == response.json()["profile_id"]
    assert consent_granted(profile_id=pid, purpose="personalisation") is True
    assert consent_granted(profile_id=pid, purpose="marketing") is False
    record = ConsentRecord.objects.get(profile_id=pid, purpose__key="marketing")
    assert record.policy_version == "7" and record.source == "banner"
    assert record.evidence["banner_id"] == "banner-a" and record.evidence["sent_by"] == "storefront"
    assert record.evidence["user_agent"] == "Mozilla/5.0 test"
    assert "203.0.113.9" not in str(record.evidence) and len(record.evidence["ip_hash"]) == 64


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"purposes": {"analytics": True}}, "userId"),
        ({"userId": "u1", "purposes": {}}, "purposes"),
        ({"userId": "u1", "purposes": {"telepathy": True}}, "purposes"),
        ({"userId": "u1", "purposes": {"analytics": "maybe"}}, "purposes.analytics"),
        ({"userId": "null", "purposes": {"analytics": True}}, "identifiers"),
    ],
)
def test_banner_bad_input_is_a_400_with_field_messages(write_key, body, field):
    response = writer(write_key).post("/v1/consent", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_banner_needs_a_write_key(secret_client):
    response = secret_client.post("/v1/consent", {"userId": "u1", "purposes": {"analytics": True}}, format="json")
    assert response.status_code in (401, 403)


def test_context_consent_is_recorded_once_per_change(write_key):
    client = writer(write_key)
    prefs = {"Analytics": True, "Advertising": True, "Functional": False}
    response = batch(
        client,
        {"type": "track", "userId": "u-ctx", "event": "Product Viewed", "context": _consent(prefs)},
        {"type": "track", "userId": "u-ctx", "event": "Product Viewed", "context": _consent(prefs)},
        {"type": "page", "userId": "u-ctx", "name": "Home", "context": _consent(prefs)},
    )
    assert response.status_code == 200, response.content
    pid = _profile_of("user_id", "u-ctx")
    assert ConsentRecord.objects.filter(profile_id=pid).count() == 3  # analytics, marketing, personalisation
    assert consent_granted(profile_id=pid, purpose="marketing") is True
    assert consent_granted(profile_id=pid, purpose="personalisation") is False
    call(client, "track", userId="u-ctx", event="Cart Viewed", context=_consent({**prefs, "Advertising": False}))
    assert ConsentRecord.objects.filter(profile_id=pid).count() == 4
    assert consent_granted(profile_id=pid, purpose="marketing") is False
    assert Event.objects.filter(profile_id=pid).count() == 4


def test_analytics_denial_is_strict_by_default(write_key):
    client = writer(write_key)
    call(client, "track", userId="u-keep", event="Product Viewed")
    response = call(client, "track", userId="u-deny", event="Product Viewed", context=_consent({"analytics": False}))
    # accepted into the intake log (decision 0039), dropped when stitched, before any identity work
    assert response.status_code == 200 and response.json()["accepted"] == 1
    assert Event.objects.filter(user_id="u-deny").count() == 0
    # later events without consent context are dropped too: the ledger answer holds
    batch(
        client,
        {"type": "track", "userId": "u-deny", "event": "Order Completed", "properties": {"revenue": 3}},
        {"type": "track", "userId": "u-keep", "event": "Order Completed", "properties": {"revenue": 4}},
    )
    denied = _profile_of("user_id", "u-deny")
    assert consent_granted(profile_id=denied, purpose="analytics") is False
    assert Event.objects.filter(profile_id=denied).count() == 0
    assert Event.objects.filter(profile_id=_profile_of("user_id", "u-keep")).count() == 2
    # the person changes their mind: events are kept again from then on
    call(client, "track", userId="u-deny", event="Product Viewed", context=_consent({"analytics": True}))
    call(client, "track", userId="u-deny", event="Product Viewed")
    assert Event.objects.filter(profile_id=denied).count() == 2


@override_settings(CONSENT_ANALYTICS_DENIAL="essential")
def test_essential_policy_keeps_orders_only(write_key):
    client = writer(write_key)
    writer(write_key).post("/v1/consent", {"userId": "u-e", "purposes": {"analytics": False}}, format="json")
    batch(
        client,
        {"type": "track", "userId": "u-e", "event": "Product Viewed"},
        {"type": "track", "userId": "u-e", "event": "Order Completed", "properties": {"revenue": 9}},
    )
    assert list(Event.objects.filter(profile_id=_profile_of("user_id", "u-e")).values_list("name", flat=True)) == [
        "Order Completed"
    ]


@override_settings(CONSENT_ANALYTICS_DENIAL="off")
def test_off_policy_keeps_everything_but_still_records(write_key):
    client = writer(write_key)
    call(client, "track", userId="u-o", event="Product Viewed", context=_consent({"analytics": False}))
    pid = _profile_of("user_id", "u-o")
    assert Event.objects.filter(profile_id=pid).count() == 1
    assert consent_granted(profile_id=pid, purpose="analytics") is False


def test_profile_consent_api_shows_state_and_history(write_key, secret_client, api_client):
    w = writer(write_key)
    w.post("/v1/consent", {"email": "Ann@Example.com", "purposes": {"marketing": True}}, format="json")
    w.post("/v1/consent", {"email": "ann@example.com", "purposes": {"marketing": False}}, format="json")
    pid = _profile_of("email", "ann@example.com")
    response = secret_client.get(f"/api/v1/profiles/{pid}/consent/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["states"]["marketing"]["granted"] is False
    assert body["states"]["analytics"] == {
        "granted": True,
        "source": "default",
        "policy_version": "1",
        "recorded_at": None,
        "expires_at": None,
        "default": True,
        "expired": False,
    }
    assert [h["granted"] for h in body["history"]] == [False, True]
    assert secret_client.get("/api/v1/profiles/00000000-0000-0000-0000-000000000000/consent/").status_code == 404
    assert secret_client.get("/api/v1/profiles/nope/consent/").status_code == 404
    assert api_client.get(f"/api/v1/profiles/{pid}/consent/").status_code in (401, 403)
    assert writer(write_key).get(f"/api/v1/profiles/{pid}/consent/").status_code in (401, 403)


@override_settings(CONSENT_CATEGORY_MAP={"Ads & Offers": "marketing"})
def test_shop_specific_category_names_map_to_purposes(write_key):
    call(writer(write_key), "track", userId="u-map", event="Product Viewed", context=_consent({"ads-and offers": True}))
    assert consent_granted(profile_id=_profile_of("user_id", "u-map"), purpose="marketing") is False  # not the same
    call(writer(write_key), "track", userId="u-map", event="Product Viewed", context=_consent({"Ads & Offers": True}))
    assert consent_granted(profile_id=_profile_of("user_id", "u-map"), purpose="marketing") is True


def test_a_denial_on_another_device_counts_in_the_batch_that_merges_it(write_key):
    client = writer(write_key)
    call(client, "track", userId="u-merge", event="Signed Up")  # known user, analytics by default
    call(client, "page", anonymousId="phone-1", name="Home", context=_consent({"Analytics": False}))
    assert _profile_of("user_id", "u-merge") != _profile_of("anonymous_id", "phone-1")
    # the same person logs in on the phone: this batch merges the two profiles
    response = batch(
        client,
        {"type": "identify", "userId": "u-merge", "anonymousId": "phone-1", "traits": {"plan": "gold"}},
        {"type": "track", "userId": "u-merge", "event": "Product Viewed"},
    )
    # accepted into the intake log (decision 0039); both dropped when stitched
    assert response.status_code == 200 and response.json()["accepted"] == 2
    assert _profile_of("user_id", "u-merge") == _profile_of("anonymous_id", "phone-1")
    assert list(Event.objects.values_list("name", flat=True)) == ["Signed Up"]


def test_a_denial_removes_what_was_stored_before_under_strict(write_key):
    client = writer(write_key)
    batch(
        client,
        {"type": "track", "userId": "u-past", "event": "Product Viewed"},
        {"type": "track", "userId": "u-past", "event": "Order Completed", "properties": {"revenue": 5}},
        {"type": "track", "userId": "u-other", "event": "Product Viewed"},
    )
    pid = _profile_of("user_id", "u-past")
    assert Event.objects.filter(profile_id=pid).count() == 2
    writer(write_key).post("/v1/consent", {"userId": "u-past", "purposes": {"analytics": False}}, format="json")
    assert Event.objects.filter(profile_id=pid).count() == 0
    assert Event.objects.filter(profile_id=_profile_of("user_id", "u-other")).count() == 1
    assert PendingWork.objects.filter(profile_id=pid).exists()  # computed traits follow


@override_settings(CONSENT_ANALYTICS_DENIAL="essential")
def test_a_denial_keeps_orders_under_essential(write_key):
    client = writer(write_key)
    batch(
        client,
        {"type": "track", "userId": "u-ess", "event": "Product Viewed"},
        {"type": "track", "userId": "u-ess", "event": "Order Completed", "properties": {"revenue": 5}},
    )
    call(client, "page", userId="u-ess", name="Home", context=_consent({"Analytics": False}))
    names = Event.objects.filter(profile_id=_profile_of("user_id", "u-ess")).values_list("name", flat=True)
    assert list(names) == ["Order Completed"]
