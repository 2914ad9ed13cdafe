from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from segments.models import Segment, SegmentMembership, SegmentSize
from segments.selectors import profile_segments, segment_member_ids
from segments.services import segment_membership_set
from tests.segments import factories as f

pytestmark = pytest.mark.django_db


def test_membership_set_records_entries_exits_and_sizes():
    # given a segment and three profiles
    seg = Segment.objects.create(slug="s", name="S", definition={"all": []})
    a, b, c = (f.profile() for _ in range(3))
    t0 = timezone.now() - timedelta(hours=2)
    # when a and b are set, then b and c
    assert segment_membership_set(segment=seg, profile_ids=[str(a.pk), str(b.pk)], at=t0) == (2, 0)
    t1 = t0 + timedelta(hours=1)
    assert segment_membership_set(segment=seg, profile_ids=[str(b.pk), str(c.pk)], at=t1) == (1, 1)
    # then a has a closed stay, b one open stay since t0, c one since t1
    seg.refresh_from_db()
    assert seg.size == 2
    assert sorted(segment_member_ids(segment=seg)) == sorted([str(b.pk), str(c.pk)])
    stay_a = SegmentMembership.objects.get(segment=seg, profile=a)
    assert (stay_a.entered_at, stay_a.exited_at) == (t0, t1)
    assert SegmentMembership.objects.get(segment=seg, profile=b).entered_at == t0
    assert list(SegmentSize.objects.filter(segment=seg).values_list("size", flat=True)) == [2, 2]
    # and setting the same members again changes nothing but records a sample
    assert segment_membership_set(segment=seg, profile_ids=[str(b.pk), str(c.pk)], at=t1 + timedelta(hours=1)) == (
        0,
        0,
    )
    # a comes back: a second stay, the first one kept
    segment_membership_set(segment=seg, profile_ids=[str(a.pk)], at=t1 + timedelta(hours=2))
    assert SegmentMembership.objects.filter(segment=seg, profile=a).count() == 2
    assert list(profile_segments(profile_id=a.pk)) == [seg]
    assert list(profile_segments(profile_id=b.pk)) == []


def test_merged_profiles_are_never_members_and_lookups_follow_merges():
    seg = Segment.objects.create(slug="s2", name="S2", definition={"all": []})
    winner, loser = f.profile(), f.profile()
    loser.merged_into = winner
    loser.save()
    assert segment_membership_set(segment=seg, profile_ids=[str(winner.pk), str(loser.pk)]) == (1, 0)
    assert list(profile_segments(profile_id=str(loser.pk))) == [seg]
    assert list(profile_segments(profile_id="not-a-uuid")) == []
