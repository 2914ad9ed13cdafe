"""Data-subject requests: API, verification, export archive, erasure across merged profiles."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from consent.models import ConsentRecord, DataSubjectRequest, ExportArchive, RequestAuditEntry, Suppression
from consent.requests import (
    export_download_path,
    privacy_request_create,
    privacy_request_enqueue,
    privacy_request_execute,
    privacy_request_verify,
)
from consent.services import ConsentError
from profiles.identity.merge import profile_merge
from profiles.models import Event, Identifier, Profile
from tests.conftest import REPO, worker_env
from tests.profiles.helpers import batch, call, writer

PII = {
    "email": "ann.smithers-quill@example.org",
    "phone_raw": "+44 7911 123457",
    "phone": "+447911123457",
    "name": "Annabel Smithers-Quill",
    "street": "17 Larkspur Lane",
    "user_id": "cust-pii-88120",
    "anonymous_id": "anon-pii-77310",
    "anonymous_id_2": "anon-pii-99112",
    "ip": "198.51.100.77",
}


def _ingest_person(write_key) -> list[str]:
    """One person, three profiles (a logged-in user, a phone-only device, an anonymous browser), then merged."""
    client = writer(write_key)
    traits = {"email": PII["email"], "name": PII["name"], "address": {"street": PII["street"]}}
    batch(
        client,
        {"type": "identify", "userId": PII["user_id"], "traits": traits, "context": {"ip": PII["ip"]}},
        {
            "type": "track",
            "userId": PII["user_id"],
            "event": "Order Completed",
            "properties": {"order_id": "o-pii-1", "shipping_name": PII["name"], "revenue": 20},
            "context": {"ip": PII["ip"], "consent": {"categoryPreferences": {"Analytics": True, "Advertising": True}}},
        },
    )
    batch(
        client,
        {"type": "identify", "anonymousId": PII["anonymous_id"], "traits": {"phone": PII["phone_raw"]}},
        {"type": "page", "anonymousId": PII["anonymous_id"], "name": "Home", "properties": {"search": PII["name"]}},
    )
    batch(client, {"type": "track", "anonymousId": PII["anonymous_id_2"], "event": "Product Viewed"})
    writer(write_key).post(
        "/v1/consent",
        {"anonymousId": PII["anonymous_id_2"], "purposes": {"personalisation": True}, "bannerId": "b1"},
        format="json",
        REMOTE_ADDR=PII["ip"],
    )
    ids = [
        Identifier.objects.get(kind=k, value=v).profile_id
        for k, v in (
            ("user_id", PII["user_id"]),
            ("anonymous_id", PII["anonymous_id"]),
            ("anonymous_id", PII["anonymous_id_2"]),
        )
    ]
    assert len(set(ids)) == 3
    winner = Profile.objects.get(pk=ids[0])
    for loser in ids[1:]:
        profile_merge(winner=Profile.objects.get(pk=winner.pk), loser=Profile.objects.get(pk=loser), reason="manual")
    return [str(i) for i in ids]


def _pii_hits(values: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Every text, varchar, JSON and text-array column of every table, searched for every PII value
    (``PII`` unless given): {label: ["table.column", ...]} of the values found."""
    values = PII if values is None else values
    patterns = [f"%{value}%" for value in values.values()]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND (data_type IN ('text', 'character varying', 'json', 'jsonb', 'character') OR "
            "(data_type = 'ARRAY' AND udt_name IN ('_text', '_varchar')))"
        )
        columns = cursor.fetchall()
        assert len(columns) > 50  # really every table
        hits: dict[str, list[str]] = {}
        for table, column in columns:
            # names come from information_schema, quoted; the values are parameters
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE ANY(%s)', [patterns])  # noqa: S608
            if not cursor.fetchone()[0]:
                continue
            for label, value in values.items():
                query = f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s'  # noqa: S608
                cursor.execute(query, [f"%{value}%"])
                if cursor.fetchone()[0]:
                    hits.setdefault(label, []).append(f"{table}.{column}")
    return hits


@pytest.mark.django_db(transaction=True)
def test_erasure_by_a_real_rq_worker_leaves_no_trace(write_key, secret_client):
    # given one person with PII across three merged profiles, consent records, admin history and cache keys
    ids = _ingest_person(write_key)
    assert Event.objects.filter(profile_id=ids[0]).count() == 5
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    profile = Profile.objects.get(pk=ids[0])
    LogEntry.objects.create(
        user=admin,
        content_type=ContentType.objects.get_for_model(Profile),
        object_id=str(profile.pk),
        object_repr=str(profile),
        action_flag=ADDITION,
        change_message="[]",
    )
    cache.set(f"recs:profile:{ids[1]}", [1, 2, 3])
    # rows of the apps above consent, erased by their own registry entries
    from recommendations.models import RecommendationServed
    from segments.models import Segment, SegmentMembership
    from segments.services import segment_membership_set

    segment = Segment.objects.create(slug="vip", name="VIP", kind="rule", status="active", definition={})
    segment_membership_set(segment=segment, profile_ids=[ids[0]])
    RecommendationServed.objects.create(profile_id=ids[0], items=["sku-1"], created_at=timezone.now())
    assert _pii_hits()  # the scan finds what is there
    ledger_before = ConsentRecord.objects.count()

    # when the shop's backend asks for erasure by e-mail and a real rq worker runs the job
    response = secret_client.post(
        "/api/v1/privacy-requests/", {"kind": "erasure", "email": PII["email"]}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "queued"
    request_id = response.json()["id"]
    done = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "privacy", "--burst"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    # then the request is done, and no PII value is left in any column of any table
    status = secret_client.get(f"/api/v1/privacy-requests/{request_id}/").json()
    assert status["status"] == "done", status
    assert status["progress"] == 1.0 and status["result"]["profiles"] == 3
    assert _pii_hits() == {}
    assert not Profile.objects.filter(pk__in=ids).exists()
    assert not SegmentMembership.objects.exists() and not RecommendationServed.objects.exists()
    assert cache.get(f"recs:profile:{ids[1]}") is None
    # the ledger's proof stays, anonymised: same number of answers, none pointing at the person
    assert ConsentRecord.objects.count() == ledger_before
    assert not ConsentRecord.objects.filter(profile_id__in=ids).exists()
    assert ConsentRecord.objects.filter(anonymised_at__isnull=False).values("profile_id").distinct().count() == 1
    assert [e.action for e in RequestAuditEntry.objects.filter(request_id=request_id)] == [
        "created",
        "verified",
        "queued",
        "started",
        "erased",
    ]
    # and later events with the person's identifiers are dropped until they opt in again
    client = writer(write_key)
    assert call(client, "track", userId=PII["user_id"], event="Product Viewed").json()["accepted"] == 0
    assert call(client, "identify", anonymousId="new-device", traits={"email": PII["email"]}).json()["accepted"] == 0
    assert not Identifier.objects.filter(value=PII["user_id"]).exists()
    assert Suppression.objects.count() == 5  # email, phone, user id, two anonymous ids
    # a stored consent cookie re-sent with an event is not an opt-in (tests/consent/test_suppression.py)
    opt_in = {"consent": {"categoryPreferences": {"Analytics": True}}}
    assert call(client, "track", userId=PII["user_id"], event="Product Viewed", context=opt_in).json()["accepted"] == 0
    banner = client.post("/v1/consent", {"userId": PII["user_id"], "purposes": {"analytics": True}}, format="json")
    assert banner.json()["profile_id"] is not None
    assert call(client, "track", userId=PII["user_id"], event="Product Viewed").json()["accepted"] == 1
    assert Suppression.objects.count() == 4


@pytest.mark.django_db
def test_access_request_exports_everything_across_merged_profiles(write_key, secret_client, client):
    ids = _ingest_person(write_key)
    response = secret_client.post("/api/v1/privacy-requests/", {"kind": "access", "profile_id": ids[2]}, format="json")
    assert response.status_code == 201
    request_id = response.json()["id"]
    assert response.json()["download_url"] is None
    privacy_request_execute(request_id=request_id)  # the job's body (the rq worker runs it in the test above)

    status = secret_client.get(f"/api/v1/privacy-requests/{request_id}/").json()
    assert status["status"] == "done" and status["download_url"].startswith("http://testserver/privacy/exports/")
    download = client.get(status["download_url"].removeprefix("http://testserver"))
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    archive = json.loads(b"".join(download.streaming_content) if download.streaming else download.content)
    assert archive["format"] == "cdp-privacy-export/1"
    assert sorted(archive["profile_ids"]) == sorted(ids)
    sections = archive["sections"]
    assert {p["id"] for p in sections["profiles"]["profiles"]} == set(ids)
    assert {(i["kind"], i["value"]) for i in sections["profiles"]["identifiers"]} >= {
        ("email", PII["email"]),
        ("phone", PII["phone"]),
        ("user_id", PII["user_id"]),
    }
    assert len(sections["profiles"]["events"]) == 5
    assert len(sections["profiles"]["merges"]) == 2
    assert {r["purpose"] for r in sections["consent"]["consent_history"]} == {
        "analytics",
        "marketing",
        "personalisation",
    }
    assert RequestAuditEntry.objects.filter(request_id=request_id, action="downloaded").count() == 1


@pytest.mark.django_db
def test_download_links_are_signed_and_expire(write_key, secret_client, client):
    ids = _ingest_person(write_key)
    request = privacy_request_create(kind="access", channel="api", requested_by="t", profile_id=ids[0], verified=True)
    privacy_request_execute(request_id=str(request.pk))
    path = export_download_path(request=request)
    token = path.rstrip("/").rsplit("/", 1)[1]
    assert client.get(path).status_code == 200
    assert client.get(path.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))).status_code == 404
    assert client.get("/privacy/exports/not-a-token/").status_code == 404
    ExportArchive.objects.filter(request=request).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(path).status_code == 404
    assert export_download_path(request=request) is None


@pytest.mark.django_db
def test_requests_entered_by_hand_need_verification(write_key):
    ids = _ingest_person(write_key)
    request = privacy_request_create(kind="erasure", channel="admin", requested_by="admin:ops", profile_id=ids[1])
    assert request.status == "received"
    assert request.due_at - request.received_at == timedelta(days=30)
    with pytest.raises(ConsentError, match="verified"):
        privacy_request_enqueue(request=request, actor="admin:ops")
    privacy_request_verify(request=request, actor="admin:ops")
    with pytest.raises(ConsentError, match="received"):
        privacy_request_verify(request=request, actor="admin:ops")
    privacy_request_enqueue(request=request, actor="admin:ops")
    done = privacy_request_execute(request_id=str(request.pk))
    assert done.status == "done" and done.profile_id is None and done.identifier_value == ""
    assert privacy_request_execute(request_id=str(request.pk)).status == "done"  # a second run changes nothing
    assert not Profile.objects.filter(pk__in=ids).exists()


@pytest.mark.django_db
def test_unknown_person_gets_the_same_answer_and_a_suppression_entry(secret_client):
    response = secret_client.post(
        "/api/v1/privacy-requests/", {"kind": "erasure", "email": "nobody@example.net"}, format="json"
    )
    assert response.status_code == 201
    request = DataSubjectRequest.objects.get(pk=response.json()["id"])
    assert request.profile_id is None
    privacy_request_execute(request_id=str(request.pk))
    assert Suppression.objects.filter(kind="email").count() == 1
    request.refresh_from_db()
    assert request.identifier_value == "" and request.subject_hint == "n***@e***.net"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "erasure"}, "profile_id"),
        ({"kind": "delete", "email": "a@example.com"}, "kind"),
        ({"kind": "access", "email": "a@example.com", "phone": "+447700900000"}, "profile_id"),
        ({"kind": "access", "profile_id": "not-a-uuid"}, "profile_id"),
        ({"kind": "access", "profile_id": "00000000-0000-0000-0000-000000000000"}, "profile_id"),
        ({"kind": "access", "email": "not an email"}, "email"),
    ],
)
def test_bad_request_input_is_a_400(secret_client, body, field):
    response = secret_client.post("/api/v1/privacy-requests/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_privacy_requests_need_a_secret_key(write_key, api_client):
    body = {"kind": "access", "email": "a@example.com"}
    assert writer(write_key).post("/api/v1/privacy-requests/", body, format="json").status_code in (401, 403)
    assert api_client.post("/api/v1/privacy-requests/", body, format="json").status_code in (401, 403)
    assert api_client.get("/api/v1/privacy-requests/").status_code in (401, 403)


@pytest.mark.django_db
def test_requests_are_listed_newest_first_in_pages(secret_client):
    for n in range(3):
        secret_client.post("/api/v1/privacy-requests/", {"kind": "access", "email": f"p{n}@example.com"}, format="json")
    page = secret_client.get("/api/v1/privacy-requests/?page_size=2").json()
    assert [r["subject_hint"] for r in page["results"]] == ["p***@e***.com", "p***@e***.com"]
    assert page["next"] is not None
    rest = secret_client.get(page["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None


@pytest.mark.django_db
def test_a_failing_eraser_fails_the_request_without_erasing_anything(write_key):
    from consent.privacy import privacy_register, privacy_unregister

    ids = _ingest_person(write_key)

    def broken(profile_ids):
        raise RuntimeError("segments database unavailable")

    privacy_register(name="zz-broken", models=[], export=lambda ids: {}, erase=broken, order=5)
    try:
        request = privacy_request_create(
            kind="erasure", channel="api", requested_by="t", profile_id=ids[0], verified=True
        )
        with pytest.raises(RuntimeError):
            privacy_request_execute(request_id=str(request.pk))
    finally:
        privacy_unregister(name="zz-broken")
    request.refresh_from_db()
    assert request.status == "failed" and "RuntimeError" in request.error
    assert Profile.objects.filter(pk__in=ids).count() == 3  # all or nothing
    assert not Suppression.objects.exists()
    # run again (admin's "run") once the app is back
    privacy_request_enqueue(request=request, actor="admin:ops")
    assert privacy_request_execute(request_id=str(request.pk)).status == "done"
    assert not Profile.objects.filter(pk__in=ids).exists()


@pytest.mark.django_db
def test_unknown_request_ids_are_404(secret_client):
    assert secret_client.get("/api/v1/privacy-requests/nope/").status_code == 404
    missing = secret_client.get("/api/v1/privacy-requests/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
