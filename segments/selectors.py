"""Reads of the segments app: who is in which segment."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from segments.models import Segment, SegmentKind, SegmentMembership, SegmentStatus


def segments_active() -> QuerySet[Segment]:
    """Every active segment (rule and accepted cluster segments)."""
    return Segment.objects.filter(status=SegmentStatus.ACTIVE)


def rule_segments_active() -> QuerySet[Segment]:
    """Active rule segments: the ones the rule engine evaluates."""
    return segments_active().filter(kind=SegmentKind.RULE)


def _live_profile_id(profile_id: uuid.UUID | str) -> uuid.UUID | None:
    from profiles.models import Profile
    from profiles.selectors import profile_get_live

    try:
        profile, _ = profile_get_live(profile_id=profile_id)
    except Profile.DoesNotExist:
        return None
    return profile.pk


def profile_segments(*, profile_id: uuid.UUID | str) -> QuerySet[Segment]:
    """Active segments the live profile (merges followed) is a member of; empty for an unknown id."""
    live = _live_profile_id(profile_id)
    if live is None:
        return Segment.objects.none()
    return segments_active().filter(memberships__profile_id=live, memberships__exited_at__isnull=True).distinct()


def segment_members(*, segment: Segment) -> QuerySet[SegmentMembership]:
    """The open memberships of a segment, newest entries first."""
    return SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).order_by("-entered_at", "-id")


def segment_member_ids(*, segment: Segment) -> list[str]:
    """Ids (strings) of the profiles currently in the segment."""
    return [
        str(pid)
        for pid in SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
        .order_by("profile_id")
        .values_list("profile_id", flat=True)
    ]
