"""The segments API with a secret key: CRUD with field-level errors, preview, members, CSV export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from segments.models import Segment, SegmentMembership
from segments.services import segment_membership_set
from tests.segments import examples
from tests.segments import factories as f

pytestmark = pytest.mark.django_db

VIEWERS = {"event": "Product Viewed", "where": [{"property": "category", "op": "=", "value": "outdoor"}]}


@pytest.fixture
def viewers():
    now = timezone.now()
    people = [f.profile(traits={"email": f"p{i}@example.com", "name": f"P {i}"}) for i in range(3)]
    for p in people[:2]:
        f.event(p, "Product Viewed", now - timedelta(hours=1), properties={"category": "outdoor"})
    return people


def test_needs_a_secret_key(api_client, write_key):
    assert api_client.get("/api/v1/segments/").status_code in (401, 403)


def test_create_refreshes_and_lists_members(secret_client, viewers, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # the refresh task is queued; run it here
        response = secret_client.post(
            "/api/v1/segments/",
            {"slug": "outdoor-viewers", "name": "Outdoor viewers", "definition": VIEWERS},
            format="json",
        )
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "rule"
    from segments.tasks import segment_refresh

    segment_refresh(Segment.objects.get(slug="outdoor-viewers").pk)
    body = secret_client.get("/api/v1/segments/outdoor-viewers/").json()
    assert body["size"] == 2
    page = secret_client.get("/api/v1/segments/outdoor-viewers/members/?page_size=1").json()
    assert len(page["results"]) == 1 and page["next"]
    second = secret_client.get(page["next"]).json()
    ids = {page["results"][0]["profile_id"], second["results"][0]["profile_id"]}
    assert ids == {str(viewers[0].pk), str(viewers[1].pk)}
    assert [s["slug"] for s in secret_client.get("/api/v1/segments/?kind=rule").json()] == ["outdoor-viewers"]
    mine = secret_client.get(f"/api/v1/profiles/{viewers[0].pk}/segments/").json()
    assert [s["slug"] for s in mine] == ["outdoor-viewers"]
    assert secret_client.get(f"/api/v1/profiles/{viewers[2].pk}/segments/").json() == []


def test_invalid_definitions_get_field_level_messages(secret_client):
    bad = {"all": [{"trait": "age", "op": ">", "value": 18}, {"trait": "age", "op": "between", "value": [65, 18]}]}
    response = secret_client.post("/api/v1/segments/", {"slug": "x", "name": "X", "definition": bad}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "definition.all[1].value": ["'between' needs two values, the lower first"]
    }
    unknown = {"computed": "monetary_365d", "op": ">=", "value": 500}
    fields = secret_client.post("/api/v1/segments/preview/", {"definition": unknown}, format="json").json()["error"][
        "fields"
    ]
    assert (
        list(fields) == ["definition.computed"]
        and "Unknown computed trait 'monetary_365d'" in fields["definition.computed"][0]
    )
    assert secret_client.post("/api/v1/segments/", {"name": "X"}, format="json").json()["error"]["fields"].keys() == {
        "slug",
        "definition",
    }
    assert not Segment.objects.exists()


def test_update_patch_delete_and_cycles(secret_client, viewers):
    a = secret_client.post("/api/v1/segments/", {"slug": "a", "name": "A", "definition": VIEWERS}, format="json")
    assert a.status_code == 201
    b_def = {"all": [{"segment": "a"}]}
    assert (
        secret_client.post(
            "/api/v1/segments/", {"slug": "b", "name": "B", "definition": b_def}, format="json"
        ).status_code
        == 201
    )
    # a -> b -> a is refused
    cyc = secret_client.patch("/api/v1/segments/a/", {"definition": {"segment": "b"}}, format="json")
    assert cyc.status_code == 400
    assert "cycle" in cyc.json()["error"]["fields"]["definition.segment"][0]
    put = secret_client.put(
        "/api/v1/segments/a/", {"slug": "a", "name": "A2", "definition": examples.AT_RISK_VIPS}, format="json"
    )
    assert put.status_code == 200 and put.json()["name"] == "A2"
    assert secret_client.patch("/api/v1/segments/a/", {"description": "d"}, format="json").json()["description"] == "d"
    assert secret_client.delete("/api/v1/segments/b/").status_code == 204
    assert secret_client.get("/api/v1/segments/b/").status_code == 404


def test_preview_gives_size_and_sample_without_saving(secret_client, viewers):
    body = secret_client.post("/api/v1/segments/preview/", {"definition": VIEWERS, "sample": 5}, format="json").json()
    assert body["size"] == 2
    assert {m["email"] for m in body["sample"]} == {"p0@example.com", "p1@example.com"}
    assert not Segment.objects.exists()


def test_csv_export_for_marketing_keeps_only_consenting_members(secret_client, viewers):
    from consent.services import consent_record, purposes_ensure

    purposes_ensure()
    seg = Segment.objects.create(slug="all3", name="All three", definition={"all": []})
    segment_membership_set(segment=seg, profile_ids=[str(p.pk) for p in viewers])
    consent_record(profile_id=viewers[0].pk, choices={"marketing": True}, source="api")
    consent_record(profile_id=viewers[1].pk, choices={"marketing": False}, source="api")

    def export(query: str) -> list[dict]:
        response = secret_client.get(f"/api/v1/segments/all3/members/export/{query}")
        assert response.status_code == 200 and response["Content-Type"] == "text/csv"
        return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    assert {r["email"] for r in export("?purpose=analytics")} == {"p0@example.com", "p1@example.com", "p2@example.com"}
    assert [r["email"] for r in export("?purpose=marketing")] == ["p0@example.com"]
    # an export always states what it is for: without a purpose it is refused, not consent-blind
    missing = secret_client.get("/api/v1/segments/all3/members/export/")
    assert missing.status_code == 400 and "purpose" in missing.json()["error"]["fields"]
    assert secret_client.get("/api/v1/segments/all3/members/export/?purpose=spam").status_code == 400


def test_privacy_entry_exports_and_erases_memberships(viewers):
    from consent.privacy import privacy_entries

    entry = next(e for e in privacy_entries() if e.name == "segments")
    assert SegmentMembership in entry.models
    seg = Segment.objects.create(slug="s", name="S", definition={"all": []})
    segment_membership_set(segment=seg, profile_ids=[str(viewers[0].pk), str(viewers[1].pk)])
    data = entry.export([str(viewers[0].pk)])
    assert [m["segment"] for m in data["segment_memberships"]] == ["s"]
    entry.erase([str(viewers[0].pk)])
    assert not SegmentMembership.objects.filter(profile=viewers[0]).exists()
    assert Segment.objects.get(pk=seg.pk).size == 1


def test_clustering_endpoints_are_mounted_on_the_shared_router(secret_client):
    assert secret_client.get("/api/v1/clustering-runs/").status_code == 200
    assert secret_client.post("/api/v1/cluster-segments/nope/accept/").status_code == 404


def test_a_cluster_segments_status_is_not_edited_by_hand(secret_client):
    # given a proposed cluster segment
    Segment.objects.create(slug="cluster-1", name="Cluster 1", kind="cluster", status="proposed")
    # when the API tries to activate it directly
    response = secret_client.patch("/api/v1/segments/cluster-1/", {"status": "active"}, format="json")
    # then it is refused with a field message and stays proposed (accept/dismiss decide)
    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]
    assert Segment.objects.get(slug="cluster-1").status == "proposed"
