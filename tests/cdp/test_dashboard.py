"""The admin home is a dashboard: event rates by source and type, rejections, profiles and merges,
pending work, segments with their trend, models, experiments, the privacy queue and job health."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cdp import charts
from consent.models import DataSubjectRequest
from profiles.models import Source
from segments.models import Segment, SegmentSize
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db


def test_home_shows_event_rates_by_source_and_type_and_rejected_calls(admin_client, write_key):
    client = writer(write_key)
    assert call(client, "track", userId="u1", event="Product Viewed", properties={"sku": "a"}).status_code == 200
    assert call(client, "identify", userId="u1", traits={"name": "Ann Lee"}).status_code == 200
    response = batch(client, {"type": "track", "userId": "u1"}, {"type": "track", "userId": "u2", "event": "X"})
    assert response.status_code == 200 and response.json()["errors"]  # one rejected, one stored

    page = admin_client.get("/admin/")

    html = page.content.decode()
    assert page.status_code == 200
    source = Source.objects.get().name
    assert 'aria-label="events per minute by source"' in html
    assert f"<title>{source} " in html  # a bar of the source, with its exact figure
    assert "<title>track " in html and "<title>identify " in html
    assert "<b>3</b> in the last 24 h" in html
    assert 'aria-label="rejected calls per minute"' in html
    assert "1</b> rejected in the last hour" in html


def test_home_shows_overdue_privacy_requests_segments_and_jobs(admin_client):
    now = timezone.now()
    DataSubjectRequest.objects.create(
        kind="access", channel="admin", received_at=now - timedelta(days=40), due_at=now - timedelta(days=10)
    )
    DataSubjectRequest.objects.create(kind="erasure", channel="admin", received_at=now, due_at=now + timedelta(days=3))
    segment = Segment.objects.create(slug="vips", name="VIPs", definition={"all": []}, size=12)
    SegmentSize.objects.create(segment=segment, at=now - timedelta(days=2), size=5)
    SegmentSize.objects.create(segment=segment, at=now - timedelta(days=1), size=12)

    html = admin_client.get("/admin/").content.decode()

    assert "<b>2</b> open" in html
    assert "<b>1</b> overdue" in html and "?deadline=overdue" in html
    assert "1 due within 7 days" in html
    assert ">VIPs</a>" in html and 'aria-label="size of VIPs over 30 days"' in html and ">+7<" in html
    for job in ("Identity matching", "Clustering", "Recommendation model refresh", "Segment refresh"):
        assert job in html
    assert "Experiments are not set up" in html or "Running experiments" in html
    assert "All data" in html  # the app list is still there


def test_home_for_anonymous_is_the_login_page(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_root_and_view_site_lead_somewhere_real(admin_client):
    assert admin_client.get("/").headers["Location"] == "/admin/"
    html = admin_client.get("/admin/").content.decode()
    assert 'href="/privacy/"' in html
    assert admin_client.get("/privacy/").status_code == 200


def test_a_one_sample_sparkline_is_a_dot_not_an_empty_box():
    svg = charts.sparkline([42], label="one")
    assert "<circle" in svg and "42" in svg
    assert charts.sparkline([], label="none") == ""
