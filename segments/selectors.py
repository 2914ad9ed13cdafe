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


def segment_members_for_export(*, segment: Segment, purpose: str):
    """(profile id, traits, entered_at) of current members who granted ``purpose``, for CSV
    (consent.selectors.consent_granted_q). Every export states what it is for: there is no
    consent-blind export."""
    from consent.selectors import consent_granted_q

    if not purpose:
        raise ValueError("An export needs a purpose.")
    rows = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
    rows = rows.filter(consent_granted_q(purpose=purpose, profile_field="profile_id"))
    return rows.order_by("entered_at", "pk").values_list("profile_id", "profile__traits", "entered_at").iterator(2000)


def profile_segments_with_entry(*, profile_id) -> list[dict]:
    """Active segments of the live profile with when it entered each: [{slug, name, kind, entered_at}]."""
    live = _live_profile_id(profile_id)
    if live is None:
        return []
    rows = (
        SegmentMembership.objects.filter(profile_id=live, exited_at__isnull=True, segment__status=SegmentStatus.ACTIVE)
        .select_related("segment")
        .order_by("segment__name", "segment_id")
    )
    return [
        {"slug": r.segment.slug, "name": r.segment.name, "kind": r.segment.kind, "entered_at": r.entered_at}
        for r in rows
    ]
