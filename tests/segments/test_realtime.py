"""Real time through real services: events POSTed to the tracking API, a Celery worker running the
profiles follow-up and the segments task; merges move membership to the survivor."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from profiles.models import Profile
from segments.models import Segment, SegmentMembership
from segments.services import segment_create, segments_on_merge, segments_profiles_refresh
from tests.profiles.helpers import call, writer
from tests.segments import factories as f

HOT = {
    "event": "Product Viewed",
    "where": [{"property": "category", "op": "=", "value": "outdoor"}],
    "within_last": {"hours": 24},
    "count": {"op": ">=", "value": 2},
}
BUYERS = {"event": "Order Completed"}


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_membership_follows_events_through_the_worker(celery_worker, write_key):
    # given a running worker and a rule segment
    seg = segment_create(slug="hot", name="Hot", definition=HOT, refresh="now")
    client = writer(write_key)
    view = {"category": "outdoor", "product_id": "OUT-1"}
    # when one view arrives, the profile is not in yet; a second view makes it a member
    assert call(client, "track", userId="u1", event="Product Viewed", properties=view).status_code == 200
    profile = wait_for(lambda: Profile.objects.exists()) and Profile.objects.get()
    assert wait_for(lambda: Profile.objects.get(pk=profile.pk).computed.get("events") == 1)
    assert call(client, "track", userId="u1", event="Product Viewed", properties=view).status_code == 200
    # then the worker puts it in the segment within seconds, with history and a size sample
    assert wait_for(lambda: SegmentMembership.objects.filter(segment=seg, exited_at__isnull=True).count() == 1)
    assert Segment.objects.get(pk=seg.pk).size == 1
    assert seg.sizes.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_consent_answer_moves_membership_at_once(celery_worker):
    from consent.services import consent_record

    # given a consent-based segment and a profile without marketing consent
    seg = segment_create(slug="mailable", name="Mailable", definition={"consent": "marketing"}, refresh="now")
    profile = f.profile(traits={"email": "m@example.com"})
    assert not SegmentMembership.objects.filter(segment=seg).exists()
    # when the person grants marketing (banner, privacy center or admin)
    consent_record(profile_id=profile.pk, choices={"marketing": True}, source="api")
    # then the worker puts them in through consent's hook, without waiting for the scheduled refresh
    assert wait_for(lambda: SegmentMembership.objects.filter(segment=seg, exited_at__isnull=True).count() == 1)
    # and a withdrawal takes them out again
    consent_record(profile_id=profile.pk, choices={"marketing": False}, source="api")
    assert wait_for(lambda: not SegmentMembership.objects.filter(segment=seg, exited_at__isnull=True).exists())


@pytest.mark.django_db
def test_only_segments_whose_conditions_can_change_are_touched():
    buyers = segment_create(slug="buyers", name="Buyers", definition=BUYERS, refresh="no")
    plan = segment_create(slug="pro", name="Pro", definition={"trait": "plan", "op": "=", "value": "pro"}, refresh="no")
    p = f.profile(traits={"plan": "pro"})
    f.event(p, "Order Completed", f.timezone.now())
    # a "Product Viewed" cannot change "buyers" (it depends on orders only), but traits may change
    segments_profiles_refresh(profile_ids=[str(p.pk)], event_names=["Product Viewed"])
    assert not SegmentMembership.objects.filter(segment=buyers).exists()
    assert SegmentMembership.objects.filter(segment=plan, profile=p, exited_at__isnull=True).exists()
    segments_profiles_refresh(profile_ids=[str(p.pk)], event_names=["Order Completed"])
    assert SegmentMembership.objects.filter(segment=buyers, profile=p, exited_at__isnull=True).exists()


@pytest.mark.django_db
def test_merge_moves_membership_to_the_survivor_and_unmerge_restores_it():
    from profiles.identity.merge import profile_merge, profile_unmerge

    seg = segment_create(slug="buyers", name="Buyers", definition=BUYERS, refresh="no")
    winner, loser = f.profile(), f.profile()
    f.event(loser, "Order Completed", f.timezone.now())
    segments_profiles_refresh(profile_ids=[str(winner.pk), str(loser.pk)])
    assert list(SegmentMembership.objects.filter(exited_at__isnull=True).values_list("profile_id", flat=True)) == [
        loser.pk
    ]
    with transaction.atomic():
        merge = profile_merge(winner=winner, loser=loser, reason="manual")
    segments_on_merge(winner_id=str(winner.pk), loser_id=str(loser.pk))
    open_ids = set(
        SegmentMembership.objects.filter(segment=seg, exited_at__isnull=True).values_list("profile_id", flat=True)
    )
    assert open_ids == {winner.pk}
    with transaction.atomic():
        profile_unmerge(merge=merge)
    segments_on_merge(winner_id=str(winner.pk), loser_id=str(loser.pk))
    open_ids = set(
        SegmentMembership.objects.filter(segment=seg, exited_at__isnull=True).values_list("profile_id", flat=True)
    )
    assert open_ids == {loser.pk}
    assert SegmentMembership.objects.filter(segment=seg, profile=loser).count() == 2  # history kept


def test_the_hooks_are_subscribed():
    from profiles import hooks
    from segments import realtime

    assert realtime.on_profile_activity in hooks.on_profile_activity.subscribers
    assert realtime.on_profiles_merged in hooks.on_profiles_merged.subscribers
    assert realtime.on_profiles_unmerged in hooks.on_profiles_unmerged.subscribers


@pytest.mark.django_db
def test_consent_only_segments_wait_for_the_schedule_but_merges_re_evaluate_them():
    from consent.services import consent_record, purposes_ensure

    purposes_ensure()
    seg = segment_create(slug="reachable", name="Reachable", definition={"consent": "marketing"}, refresh="no")
    p = f.profile()
    consent_record(profile_id=p.pk, choices={"marketing": True}, source="api")
    segments_profiles_refresh(profile_ids=[str(p.pk)])  # activity cannot change consent: skipped
    assert not SegmentMembership.objects.filter(segment=seg).exists()
    segments_on_merge(winner_id=str(p.pk), loser_id=str(f.profile().pk))
    assert SegmentMembership.objects.filter(segment=seg, profile=p, exited_at__isnull=True).exists()
