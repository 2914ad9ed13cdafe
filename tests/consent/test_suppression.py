"""An erased person stays forgotten on every way in (tracking API, order import, admin), until they
opt in again explicitly and after the erasure (banner, privacy center, admin); never by an event's
``context.consent``, which consent managers re-send from a stored cookie with every call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import ConsentRecord, Suppression
from consent.requests import privacy_erase
from consent.services import consent_record_for_identifiers
from profiles.models import Event, Identifier, Profile
from tests.profiles.helpers import call, writer
from tests.profiles.test_import_orders import run_import, write_csv

pytestmark = pytest.mark.django_db

ORDERS = [
    ["581001", "22727", "ALARM CLOCK RED", "2", "12/1/2010 8:45", "3.75", "40401", "France"],
    ["581002", "22728", "ALARM CLOCK PINK", "1", "12/2/2010 9:45", "3.75", "40401", "France"],
    ["581003", "22729", "ALARM CLOCK BLUE", "1", "12/2/2010 9:50", "3.75", "40402", "France"],
]


def _erase_user(user_id: str) -> None:
    owner = Identifier.objects.get(kind="user_id", value=user_id).profile_id
    privacy_erase(profile_id=str(owner))


def test_order_import_does_not_bring_an_erased_customer_back(tmp_path):
    # given an imported order history, and one customer erased afterwards
    path = write_csv(tmp_path / "orders.csv", ORDERS)
    run_import(path)
    assert Event.objects.count() == 3
    _erase_user("40401")
    assert not Identifier.objects.filter(value="40401").exists()

    # when the same file is imported again (its message ids are unknown again: erasure deleted them)
    summary = run_import(path)

    # then the erased customer is not recreated; the other customer's orders are untouched
    assert not Identifier.objects.filter(value="40401").exists()
    assert list(Event.objects.values_list("message_id", flat=True)) == ["order-581003-40402"]
    assert "2 orders of erased people skipped" in summary
    assert "events 0 inserted, 1 skipped" in summary


def test_event_context_never_lifts_suppression_a_banner_opt_in_does(write_key):
    client = writer(write_key)
    call(client, "identify", userId="u-erased-1", traits={"email": "erased.one@example.org"})
    _erase_user("u-erased-1")
    stale_cookie = {"consent": {"categoryPreferences": {"Analytics": True, "Advertising": True}}}

    # an ordinary event whose consent manager re-sends a stored "analytics: true" is still dropped
    answer = call(client, "track", userId="u-erased-1", event="Product Viewed", context=stale_cookie).json()
    assert answer["accepted"] == 0
    assert Suppression.objects.count() == 2 and not Identifier.objects.filter(value="u-erased-1").exists()
    assert not ConsentRecord.objects.filter(profile__isnull=False).exists()

    # a banner answer that does not grant analytics is refused and lifts nothing
    refused = client.post("/v1/consent", {"userId": "u-erased-1", "purposes": {"marketing": True}}, format="json")
    assert refused.status_code == 200 and refused.json()["profile_id"] is None
    assert Suppression.objects.count() == 2

    # the explicit banner opt-in lifts the user id's entry, and the person's events count again
    opted = client.post("/v1/consent", {"userId": "u-erased-1", "purposes": {"analytics": True}}, format="json")
    assert opted.json()["profile_id"] is not None
    assert Suppression.objects.count() == 1  # the e-mail stays suppressed until it opts in too
    assert call(client, "track", userId="u-erased-1", event="Product Viewed").json()["accepted"] == 1


def test_an_opt_in_dated_before_the_erasure_is_not_fresh(write_key):
    client = writer(write_key)
    call(client, "identify", userId="u-erased-2")
    _erase_user("u-erased-2")
    replayed = {
        "userId": "u-erased-2",
        "purposes": {"analytics": True},
        "timestamp": (timezone.now() - timedelta(days=3)).isoformat(),
    }
    assert client.post("/v1/consent", replayed, format="json").json()["profile_id"] is None
    assert Suppression.objects.count() == 1
    # only the explicit channels lift: an API or event source never does
    for source in ("event", "api", "import"):
        profile_id, records = consent_record_for_identifiers(
            identifiers=[("user_id", "u-erased-2")], choices={"analytics": True}, source=source
        )
        assert (profile_id, records) == (None, [])
    assert Suppression.objects.count() == 1
    profile_id, _ = consent_record_for_identifiers(
        identifiers=[("user_id", "u-erased-2")], choices={"analytics": True}, source="privacy_center"
    )
    assert profile_id is not None and not Suppression.objects.exists()


def test_admin_records_an_opt_in_and_is_refused_without_analytics(admin_client, write_key):
    call(writer(write_key), "identify", userId="u-erased-3")
    _erase_user("u-erased-3")
    url = "/admin/consent/suppression/opt-in/"
    assert "Record an opt-in" in admin_client.get("/admin/consent/suppression/").content.decode()

    form = {"identifier_kind": "user_id", "identifier_value": "u-erased-3", "note": "ticket 118"}
    page = admin_client.post(url, {**form, "purposes": ["marketing"]})
    assert page.status_code == 200 and "erased person" in page.content.decode()
    assert Suppression.objects.count() == 1 and not Profile.objects.exists()

    done = admin_client.post(url, {**form, "purposes": ["analytics", "marketing"]})
    assert done.status_code == 302
    assert not Suppression.objects.exists()
    record = ConsentRecord.objects.get(purpose__key="analytics")
    assert record.source == "admin" and record.evidence == {"admin": "admin", "note": "ticket 118"}
    assert Identifier.objects.get(value="u-erased-3").profile_id == record.profile_id


def test_rotating_the_salt_keeps_erased_people_suppressed(write_key, settings):
    client = writer(write_key)
    call(client, "identify", userId="u-rotate")
    _erase_user("u-rotate")
    old_salt = settings.CONSENT_HASH_SALT

    # a new salt with the old one kept as previous (docs/privacy.md): the entry still holds
    settings.CONSENT_HASH_SALT = "a-brand-new-salt-after-rotation-0123456789"
    settings.CONSENT_HASH_SALT_PREVIOUS = [old_salt]
    assert call(client, "track", userId="u-rotate", event="Product Viewed").json()["accepted"] == 0
    assert not Identifier.objects.filter(value="u-rotate").exists()
    # and an explicit opt-in lifts it under either salt
    assert client.post("/v1/consent", {"userId": "u-rotate", "purposes": {"analytics": True}}, format="json").json()[
        "profile_id"
    ]
    assert not Suppression.objects.exists()


def test_a_salt_changed_without_keeping_the_old_one_would_void_the_list(write_key, settings):
    # why the salt is its own required secret and rotation keeps the old one (the test above)
    client = writer(write_key)
    call(client, "identify", userId="u-void")
    _erase_user("u-void")
    settings.CONSENT_HASH_SALT = "changed-without-keeping-the-old-salt-0123456789"
    settings.CONSENT_HASH_SALT_PREVIOUS = []
    assert call(client, "track", userId="u-void", event="Product Viewed").json()["accepted"] == 1


@pytest.mark.parametrize(
    "salt", ["", "s", "x" * 63, "y" * 64, "z" * 65, "é€" * 40, "a salt of the usual length, 40 chars"]
)
@pytest.mark.parametrize("message", [b"", b"suppress:email:ann@example.com", bytes(range(256)) * 3])
def test_the_fast_hmac_is_the_standard_librarys(salt, message):
    import hashlib
    import hmac

    from consent.services import hmac_sha256_hex

    # the suppression list's keys and evidence hashes are HMAC-SHA256, made from the salt's pads
    assert hmac_sha256_hex(salt, message) == hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()
