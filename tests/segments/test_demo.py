from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from profiles.traits import traits_refresh
from segments.management.commands.demo_segments import DEMO_SEGMENTS
from segments.models import Segment
from tests.segments import factories as f

pytestmark = pytest.mark.django_db


def test_demo_segments_are_created_refreshed_and_idempotent():
    now = timezone.now()
    p = f.profile()
    f.event(p, "Order Completed", now - timedelta(days=2), properties={"revenue": 700})
    f.event(p, "Order Completed", now - timedelta(days=1), properties={"revenue": 20})
    traits_refresh(profile_ids=[p.pk], now=now)
    call_command("demo_segments", "--no-progress")
    call_command("demo_segments", "--no-progress")  # a re-run updates, never duplicates
    assert Segment.objects.count() == len(DEMO_SEGMENTS)
    sizes = dict(Segment.objects.values_list("slug", "size"))
    assert sizes["vips"] == 1 and sizes["repeat-buyers-30d"] == 1 and sizes["at-risk-vips"] == 0
