"""The DPO's queue: days left and overdue (column and filter), the request page's Verify / Run /
Download buttons, the audit trail's heading, an export size that matches the download, and
finished requests shown as finished on a read-only page without Save buttons."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import DataSubjectRequest
from consent.requests import privacy_request_create, privacy_request_execute
from profiles.models import Profile

pytestmark = pytest.mark.django_db
QUEUE = "/admin/consent/datasubjectrequest/"


def _request(kind: str = "access", due_in_days: float = 30, **traits) -> DataSubjectRequest:
    now = timezone.now()
    profile = Profile.objects.create(traits=traits or {"email": "eve@example.com"}, first_seen_at=now, last_seen_at=now)
    request = privacy_request_create(kind=kind, channel="admin", requested_by="t", profile_id=str(profile.pk))
    DataSubjectRequest.objects.filter(pk=request.pk).update(due_at=now + timedelta(days=due_in_days))
    request.refresh_from_db()
    return request


def test_queue_shows_days_left_and_filters_overdue_and_due_soon(admin_client):
    late = _request(due_in_days=-2.5)
    soon = _request(due_in_days=3.5)
    later = _request(due_in_days=20.5)

    page = admin_client.get(QUEUE).content.decode()
    assert "overdue by 3 days" in page and "3 days left" in page and "20 days left" in page

    def listed(deadline: str) -> set:
        response = admin_client.get(QUEUE, {"deadline": deadline})
        return {obj.pk for obj in response.context["cl"].result_list}

    assert listed("overdue") == {late.pk}
    assert listed("week") == {soon.pk}
    assert listed("open") == {late.pk, soon.pk, later.pk}
    assert listed("finished") == set()


def test_request_page_buttons_verify_then_run_then_download(admin_client, django_capture_on_commit_callbacks):
    request = _request()
    page = f"{QUEUE}{request.pk}/change/"

    html = admin_client.get(page).content.decode()
    assert 'id="dsr-verify"' in html and 'id="dsr-run"' in html and 'id="dsr-download"' in html
    assert 'id="dsr-run"\n        disabled title="verify it first"' in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert "Audit trail" in html and "entrys" not in html.lower()

    assert admin_client.get(f"{QUEUE}{request.pk}/verify/").status_code == 405  # a write is a POST
    response = admin_client.post(f"{QUEUE}{request.pk}/verify/", follow=True)
    assert "Identity verified" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "verified"

    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post(f"{QUEUE}{request.pk}/run/")
    request.refresh_from_db()
    assert request.status == "queued"
    assert "data-refresh-seconds" in admin_client.get(page).content.decode()  # follows the job by itself

    privacy_request_execute(request_id=str(request.pk))
    html = admin_client.get(page).content.decode()
    assert "finished" in html and "data-refresh-seconds" not in html
    assert "1 profile(s); archive stored compressed:" in html  # not mistaken for the download's size
    shown = html.split('id="dsr-download"')[1].split("</button>")[0]

    download = admin_client.post(f"{QUEUE}{request.pk}/download/")
    assert download.status_code == 200 and download["Content-Disposition"].startswith("attachment;")
    assert json.loads(download.content)["sections"]["profiles"]["profiles"][0]["traits"] == {"email": "eve@example.com"}
    size = len(download.content)
    assert f"Download export ({size:,} bytes)" in shown or f"({size / 1000:,.1f} kB)" in shown
    assert int(download["Content-Length"]) == size
    audit = [a.action for a in request.audit.all()]
    assert audit[-1] == "downloaded" and "verified" in audit


def test_erasure_has_no_download_and_a_finished_request_is_read_only(admin_client):
    request = _request(kind="erasure")
    admin_client.post(f"{QUEUE}{request.pk}/verify/")
    privacy_request_execute(request_id=str(request.pk))
    html = admin_client.get(f"{QUEUE}{request.pk}/change/").content.decode()
    assert "only access requests have an export" in html
    assert "finished" in html and 'name="_save"' not in html
    response = admin_client.post(f"{QUEUE}{request.pk}/download/", follow=True)
    assert "Only a finished access request has an export." in response.content.decode()


def test_buttons_need_the_change_permission(client, django_user_model):
    from django.contrib.auth.models import Permission

    request = _request()
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_datasubjectrequest"))
    client.force_login(viewer)
    html = client.get(f"{QUEUE}{request.pk}/change/").content.decode()
    assert 'id="dsr-verify"\n        disabled' in html
    assert client.post(f"{QUEUE}{request.pk}/verify/").status_code == 403
    request.refresh_from_db()
    assert request.status == "received"
