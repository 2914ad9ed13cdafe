"""The privacy center, end to end with the Django test client (CSRF checks on)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client, override_settings
from django.utils import timezone

from consent.models import ConsentRecord, DataSubjectRequest, PrivacyCenterToken
from consent.requests import privacy_request_execute
from consent.selectors import consent_granted
from profiles.models import Identifier, Profile
from tests.profiles.helpers import call, writer

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://testserver(/privacy/verify/[^/\s]+/)")


def _csrf(client: Client, path: str) -> str:
    client.get(path)
    return client.cookies["csrftoken"].value


def _ask_link(client: Client, email: str):
    token = _csrf(client, "/privacy/")
    return client.post("/privacy/", {"email": email, "csrfmiddlewaretoken": token})


def _sign_in(client: Client, email: str) -> str:
    mail.outbox.clear()
    _ask_link(client, email)
    (path,) = LINK.findall(mail.outbox[-1].body)
    response = client.post(path, {"csrfmiddlewaretoken": _csrf(client, path)})
    assert response.status_code == 302 and response["Location"] == "/privacy/me/"
    return path


@pytest.fixture
def known(write_key) -> Profile:
    call(writer(write_key), "identify", userId="u-center", traits={"email": "Carla@Example.com", "name": "Carla"})
    return Identifier.objects.get(kind="email", value="carla@example.com").profile


@override_settings(PRIVACY_CENTER_SHOP_NAME="Maple & Co", PRIVACY_CENTER_PRIMARY_COLOR="#123456")
def test_start_page_is_branded_and_fits_a_phone():
    response = Client().get("/privacy/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Maple &amp; Co" in html and "--primary: #123456" in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_same_answer_for_known_and_unknown_addresses(known):
    pages = []
    for email in ("carla@example.com", "nobody-here@example.com"):
        response = _ask_link(Client(enforce_csrf_checks=True), email)
        assert response.status_code == 200
        pages.append(response.content.decode().replace(email, "EMAIL"))
    assert pages[0] == pages[1]
    assert len(mail.outbox) == 2  # a link goes out either way: the mailbox is the proof of ownership
    assert PrivacyCenterToken.objects.count() == 2
    # nothing readable about the address is stored with the link
    assert not PrivacyCenterToken.objects.filter(email_sealed__icontains="carla").exists()


def test_posting_without_csrf_token_is_refused(known):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/privacy/", {"email": "carla@example.com"}).status_code == 403
    assert len(mail.outbox) == 0


def test_bad_email_is_a_form_error():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/privacy/", {"email": "not-an-email", "csrfmiddlewaretoken": _csrf(client, "/privacy/")})
    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()


def test_link_works_once_and_not_after_it_expires(known):
    client = Client(enforce_csrf_checks=True)
    path = _sign_in(client, "carla@example.com")
    other = Client(enforce_csrf_checks=True)
    assert other.get(path).status_code == 410
    assert other.post(path, {"csrfmiddlewaretoken": _csrf(other, "/privacy/")}).status_code == 410
    assert other.get("/privacy/me/")["Location"] == "/privacy/"
    # an expired one
    mail.outbox.clear()
    _ask_link(other, "carla@example.com")
    (path2,) = LINK.findall(mail.outbox[-1].body)
    PrivacyCenterToken.objects.filter(used_at__isnull=True).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert other.get(path2).status_code == 410
    # a scanner's GET does not use a link up
    mail.outbox.clear()
    _ask_link(other, "carla@example.com")
    (path3,) = LINK.findall(mail.outbox[-1].body)
    assert other.get(path3).status_code == 200 and other.get(path3).status_code == 200


def test_customer_changes_consent_and_downloads_an_export(known):
    client = Client(enforce_csrf_checks=True)
    _sign_in(client, "carla@example.com")
    page = client.get("/privacy/me/")
    assert page.status_code == 200 and "carla@example.com" in page.content.decode()
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/privacy/me/", {"purpose_analytics": "on", "purpose_marketing": "on", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert consent_granted(profile_id=known.pk, purpose="marketing") is True
    assert consent_granted(profile_id=known.pk, purpose="personalisation") is False
    assert set(ConsentRecord.objects.filter(profile_id=known.pk).values_list("source", flat=True)) == {"privacy_center"}

    response = client.post("/privacy/me/requests/", {"kind": "access", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    request = DataSubjectRequest.objects.get(kind="access")
    assert request.channel == "privacy_center" and request.status == "queued" and request.profile_id == known.pk
    privacy_request_execute(request_id=str(request.pk))
    page = client.get("/privacy/me/").content.decode()
    (download,) = re.findall(r'href="(/privacy/exports/[^"]+)"', page)
    archive = client.get(download)
    assert archive.status_code == 200 and b"carla@example.com" in archive.content


def test_customer_asks_for_erasure_with_confirmation(known):
    client = Client(enforce_csrf_checks=True)
    _sign_in(client, "carla@example.com")
    token = client.cookies["csrftoken"].value
    client.post("/privacy/me/requests/", {"kind": "erasure", "csrfmiddlewaretoken": token})
    assert not DataSubjectRequest.objects.exists()  # not confirmed
    response = client.post("/privacy/me/requests/", {"kind": "erasure", "confirm": "on", "csrfmiddlewaretoken": token})
    assert response.status_code == 200 and b"We will erase your data" in response.content
    assert client.get("/privacy/me/")["Location"] == "/privacy/"  # signed out
    request = DataSubjectRequest.objects.get()
    assert request.kind == "erasure" and request.status == "queued" and request.verified_at is not None
    privacy_request_execute(request_id=str(request.pk))
    assert not Profile.objects.filter(pk=known.pk).exists()


def test_erasure_ends_the_persons_privacy_center_sessions(known):
    client = Client(enforce_csrf_checks=True)
    _sign_in(client, "carla@example.com")
    assert client.get("/privacy/me/").status_code == 200
    # the shop's backend erases the person while their privacy-center session is open
    from consent.requests import privacy_request_create

    request = privacy_request_create(
        kind="erasure",
        channel="api",
        requested_by="t",
        identifier_kind="email",
        identifier_value="carla@example.com",
        verified=True,
    )
    privacy_request_execute(request_id=str(request.pk))
    assert client.get("/privacy/me/")["Location"] == "/privacy/"
    assert not PrivacyCenterToken.objects.exists()


def test_the_sealed_address_is_authenticated_encryption_from_a_kept_library(client):
    # given a link sent for an address
    _ask_link(client, "sealed.person@example.org")
    (path,) = LINK.findall(mail.outbox[-1].body)
    token = path.rstrip("/").rsplit("/", 1)[1]
    row = PrivacyCenterToken.objects.get()
    from consent.center import _seal, _unseal

    # the stored seal is a Fernet token (cryptography): random IV, so the same address sealed again differs,
    # and it does not reveal the address's length byte for byte
    assert "sealed.person@example.org" not in row.email_sealed
    assert row.email_sealed.startswith("gAAAAA")
    assert _seal(token, "sealed.person@example.org") != _seal(token, "sealed.person@example.org")
    assert _unseal(token, row.email_sealed) == "sealed.person@example.org"
    # an altered seal or another token reads as nothing (a keystream XOR would yield other text)
    tampered = row.email_sealed[:-6] + ("AAAAAA" if row.email_sealed[-6:] != "AAAAAA" else "BBBBBB")
    assert _unseal(token, tampered) is None
    assert _unseal(token + "x", row.email_sealed) is None
    # and the link still signs the person in once
    response = client.post(path, {"csrfmiddlewaretoken": _csrf(client, path)})
    assert response.status_code == 302 and response["Location"] == "/privacy/me/"
