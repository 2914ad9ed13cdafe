"""Scheduled refresh: time windows move without any event; the schedule and the command catch up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from segments.models import SegmentMembership
from segments.schedule import ENTRIES
from segments.services import segment_create, segments_refresh_all
from segments.tasks import heavy_segments_refresh
from tests.segments import factories as f

pytestmark = pytest.mark.django_db


def test_time_window_members_leave_when_the_window_moves_past_them():
    now = timezone.now()
    p = f.profile(traits={"plan": "pro"})
    f.event(p, "Order Completed", now - timedelta(days=6, hours=23))
    recent = segment_create(
        slug="recent", name="Recent", definition={"event": "Order Completed", "within_last": {"days": 7}}, refresh="now"
    )
    pro = segment_create(slug="pro", name="Pro", definition={"trait": "plan", "op": "=", "value": "pro"}, refresh="now")
    assert SegmentMembership.objects.filter(segment=recent, exited_at__isnull=True).count() == 1
    # two hours later nothing happened, but the order is now older than 7 days
    assert segments_refresh_all(time_based_only=True, at=now + timedelta(hours=2)) == 1  # only "recent"
    assert not SegmentMembership.objects.filter(segment=recent, exited_at__isnull=True).exists()
    assert SegmentMembership.objects.filter(segment=pro, exited_at__isnull=True).count() == 1
    assert heavy_segments_refresh() == 2  # nightly: every rule segment
    assert {e["task"] for e in ENTRIES.values()} >= {"segments.tasks.heavy_segments_refresh"}


def test_refresh_command(capsys):
    segment_create(slug="pro", name="Pro", definition={"trait": "plan", "op": "=", "value": "pro"}, refresh="no")
    f.profile(traits={"plan": "pro"})
    call_command("refresh_segments", "pro", "--no-progress")
    assert "pro: 1 entered, 0 exited, 1 members" in capsys.readouterr().out
    call_command("refresh_segments", "--no-progress")
    with pytest.raises(CommandError, match="No such segment: nope"):
        call_command("refresh_segments", "nope", "--no-progress")
