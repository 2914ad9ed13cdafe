"""Admin: create a rule segment through the form, live validation and preview, the change page."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from segments.models import Segment
from tests.segments import examples
from tests.segments import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def shoppers():
    now = timezone.now()
    people = [f.profile(traits={"email": f"s{i}@example.com"}) for i in range(2)]
    for _ in range(3):
        f.event(people[0], "Product Viewed", now - timedelta(hours=2), properties={"category": "outdoor"})
    return people


def test_live_validation_answers_with_field_messages_then_a_preview(admin_client, shoppers):
    url = "/admin/segments/segment/validate/"
    bad = {"definition": json.dumps({"trait": "age", "op": "between", "value": [9, 1]}), "slug": ""}
    assert admin_client.post(url, bad, content_type="application/json").json()["errors"] == {
        "definition.value": ["'between' needs two values, the lower first"]
    }
    broken = admin_client.post(url, {"definition": "{not json"}, content_type="application/json").json()
    assert "Not valid JSON" in broken["errors"]["definition"][0]
    good = {"definition": json.dumps(examples.HOT_LEADS), "slug": "hot"}
    body = admin_client.post(url, good, content_type="application/json").json()
    assert body["errors"] == {} and body["size"] == 1 and body["sample"][0]["email"] == "s0@example.com"


def test_create_through_the_form_refreshes_and_the_page_shows_members_and_chart(admin_client, shoppers):
    response = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Hot leads",
            "slug": "hot-leads",
            "description": "",
            "status": "active",
            "definition": json.dumps(examples.HOT_LEADS),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    seg = Segment.objects.get(slug="hot-leads")
    assert seg.size == 1 and seg.created_by == "admin:admin"
    page = admin_client.get(f"/admin/segments/segment/{seg.pk}/change/").content.decode()
    assert "<svg" in page and "s0@example.com" in page and "members/export/?purpose=marketing" in page


def test_form_refuses_an_invalid_definition_with_the_path(admin_client):
    response = admin_client.post(
        "/admin/segments/segment/add/",
        {"name": "X", "slug": "x", "status": "active", "definition": json.dumps({"event": ""})},
    )
    assert response.status_code == 200
    assert "definition.event: Name the event" in response.content.decode()
    assert not Segment.objects.exists()


def test_cluster_segment_page_has_no_definition_editor_and_keeps_status_for_the_run_actions(admin_client):
    seg = Segment.objects.create(
        slug="c1", name="Cluster 1", kind="cluster", status="proposed", cluster_profile={"sessions": 4}
    )
    page = admin_client.get(f"/admin/segments/segment/{seg.pk}/change/")
    assert page.status_code == 200 and "seg-definition" not in page.content.decode()
    response = admin_client.post(
        f"/admin/segments/segment/{seg.pk}/change/",
        {"name": "Weekend browsers", "slug": "c1", "description": "", "status": "dismissed"},
    )
    assert response.status_code == 302, response.content.decode()[:1500]
    seg.refresh_from_db()
    # the name is the marketer's; the status is decided by accept/dismiss on the clustering run
    assert (seg.name, seg.status, seg.definition) == ("Weekend browsers", "proposed", None)
