"""Admin: the request queue (due dates, overdue, verify/run/download), the read-only ledger, purposes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import ConsentRecord, DataSubjectRequest, Purpose
from consent.requests import privacy_request_create, privacy_request_execute
from consent.services import consent_record
from profiles.models import Profile

pytestmark = pytest.mark.django_db


def _profile(**traits) -> Profile:
    now = timezone.now()
    return Profile.objects.create(traits=traits, first_seen_at=now, last_seen_at=now)


def test_queue_highlights_overdue_requests(admin_client):
    late = privacy_request_create(
        kind="access", channel="api", requested_by="t", identifier_kind="email", identifier_value="late@example.com"
    )
    DataSubjectRequest.objects.filter(pk=late.pk).update(due_at=timezone.now() - timedelta(days=1))
    privacy_request_create(
        kind="erasure", channel="api", requested_by="t", identifier_kind="email", identifier_value="fresh@example.com"
    )
    page = admin_client.get("/admin/consent/datasubjectrequest/").content.decode()
    assert page.count("overdue</strong>") == 1
    assert "l***@e***.com" in page and "late@example.com" not in page


def test_admin_enters_verifies_runs_and_downloads(admin_client, django_capture_on_commit_callbacks):
    p = _profile(email="eve@example.com")
    response = admin_client.post("/admin/consent/datasubjectrequest/add/", {"kind": "access", "profile_id": str(p.pk)})
    assert response.status_code == 302, response.context["adminform"].form.errors
    request = DataSubjectRequest.objects.get()
    assert request.status == "received" and request.channel == "admin"
    changelist = "/admin/consent/datasubjectrequest/"
    # run before verification is refused with a message
    admin_client.post(changelist, {"action": "run", "_selected_action": [request.pk]})
    request.refresh_from_db()
    assert request.status == "received"
    admin_client.post(changelist, {"action": "verify", "_selected_action": [request.pk]})
    request.refresh_from_db()
    assert request.status == "verified" and request.verified_by == "admin:admin"
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post(changelist, {"action": "run", "_selected_action": [request.pk]})
    request.refresh_from_db()
    assert request.status == "queued"
    privacy_request_execute(request_id=str(request.pk))
    response = admin_client.post(changelist, {"action": "download", "_selected_action": [request.pk]})
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    archive = json.loads(response.content)
    assert archive["sections"]["profiles"]["profiles"][0]["traits"] == {"email": "eve@example.com"}
    detail = admin_client.get(f"{changelist}{request.pk}/change/").content.decode()
    assert "finished" in detail and "downloaded" in detail and "<progress" not in detail


def test_admin_add_form_reports_bad_input(admin_client):
    response = admin_client.post(
        "/admin/consent/datasubjectrequest/add/",
        {"kind": "access", "identifier_kind": "email", "identifier_value": "x"},
    )
    assert response.status_code == 200 and "Not a usable email" in response.content.decode()
    response = admin_client.post("/admin/consent/datasubjectrequest/add/", {"kind": "access"})
    assert "Give the profile id" in response.content.decode()
    assert not DataSubjectRequest.objects.exists()


def test_ledger_is_read_only_in_admin(admin_client):
    p = _profile()
    (record,) = consent_record(profile_id=p.pk, choices={"marketing": True}, source="api")
    base = "/admin/consent/consentrecord/"
    assert admin_client.get(base).status_code == 200
    assert admin_client.get(f"{base}add/").status_code == 403
    assert admin_client.get(f"{base}{record.pk}/delete/").status_code == 403
    view = admin_client.get(f"{base}{record.pk}/change/")
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    admin_client.post(f"{base}{record.pk}/change/", {"granted": ""})
    assert ConsentRecord.objects.get(pk=record.pk).granted is True


def test_purposes_are_managed_in_admin(admin_client):
    response = admin_client.post(
        "/admin/consent/purpose/add/",
        {
            "key": "surveys",
            "name": "Surveys",
            "legal_basis": "consent",
            "policy_version": "1",
            "position": 9,
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    surveys = Purpose.objects.get(key="surveys")
    assert surveys.default_granted is False and surveys.is_active is True
    assert admin_client.get(f"/admin/consent/purpose/{surveys.pk}/delete/").status_code == 403
