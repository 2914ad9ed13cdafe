"""Fixes seen on the way (issue 16): the CSV's name column, and a size chart with one sample."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from segments.admin import size_chart_svg
from segments.models import Segment
from segments.services import segment_membership_set
from tests.segments.factories import profile

pytestmark = pytest.mark.django_db


def test_csv_name_column_is_filled_from_name_or_first_and_last_name(secret_client):
    people = [
        profile(traits={"email": "a@example.com", "name": "Ann Lee"}),
        profile(traits={"email": "b@example.com", "first_name": "Bob", "last_name": "Stone"}),
        profile(traits={"email": "c@example.com", "firstName": "Cy", "lastName": "Twombly"}),
        profile(traits={"email": "d@example.com"}),
    ]
    from consent.services import consent_record, purposes_ensure

    purposes_ensure()
    for person in people:
        consent_record(profile_id=person.pk, choices={"marketing": True}, source="api")
    segment = Segment.objects.create(slug="named", name="Named", definition={"all": []})
    segment_membership_set(segment=segment, profile_ids=[str(p.pk) for p in people])

    response = secret_client.get("/api/v1/segments/named/members/export/?purpose=marketing")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    assert {r["email"]: r["name"] for r in rows} == {
        "a@example.com": "Ann Lee",
        "b@example.com": "Bob Stone",
        "c@example.com": "Cy Twombly",
        "d@example.com": "",
    }
    members = secret_client.get("/api/v1/segments/named/members/").json()["results"]
    assert {m["email"]: m["name"] for m in members}["b@example.com"] == "Bob Stone"


def test_size_chart_with_one_sample_draws_the_point_and_says_so():
    at = timezone.now()
    svg = size_chart_svg([(at, 42)])
    assert "<circle" in svg and "42 on" in svg and "one sample so far" in svg
    two = size_chart_svg([(at, 40), (at, 42)])
    assert "<polyline" in two and "one sample" not in two
