"""A personalised answer reads the profile, its consent, its active segments and its recent product
events in one statement (``serving._resolve(context=True)``): the same segments and history the
separate queries read, and nothing of them where consent does not allow it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recommendations import serving
from tests.recommendations.conftest import add_event, grant

pytestmark = pytest.mark.django_db


def in_segment(slug: str, people: list[str], status: str = "active") -> None:
    from segments.models import Segment
    from segments.services import segment_membership_set

    segment = Segment.objects.create(slug=slug, name=slug.title(), kind="rule", status=status)
    segment_membership_set(segment=segment, profile_ids=people)


def test_one_statement_reads_what_the_separate_queries_read(shop):
    from profiles.models import Identifier

    catalog = serving.current()[1]
    person, other = shop.person(2), shop.person(11)  # orders; no orders
    for p in (person, other):
        grant(p)
    in_segment("gift-buyers", [person, other])
    in_segment("proposed", [person], status="proposed")  # not active: not read
    now = timezone.now()
    add_event(
        shop.source,
        person,
        "Product Viewed",
        {"product_id": "TOY-2", "category": "toys"},
        now,
        device_type="mobile",
        local_hour=21,
    )
    add_event(shop.source, person, "Product Viewed", {"sku": "BOO-3"}, now - timedelta(minutes=5))
    add_event(shop.source, person, "Product Viewed", {"product_id": "ELE-3"}, now - timedelta(hours=2))  # old session
    Identifier.objects.create(kind="user_id", value="shopper-2", profile_id=person, last_seen_at=now)
    for query in (
        serving.Query(profile_id=person),
        serving.Query(user_id="shopper-2"),
        serving.Query(profile_id=other),
    ):
        pid, consent, read = serving._resolve(query, context=True)
        assert consent and read is not None
        segments, rows = read
        assert segments == serving.profile_segments(pid)
        got, want = serving.history_of(rows, catalog), serving.recent_history(pid, catalog)
        assert got == want
        assert serving._resolve(query, context=False) == (pid, True, None)
    history = serving.history_of(serving._resolve(serving.Query(profile_id=person), context=True)[2][1], catalog)
    assert history.session_items == ["TOY-2", "BOO-3"] and history.session_category == "toys"
    assert (history.device, history.local_hour) == ("mobile", 21)
    assert {"ELE-1", "BOO-1", "TOY-1"} <= set(history.bought)
    assert [slug for slug, _ in serving.profile_segments(person)] == ["gift-buyers"]


def test_without_consent_or_merged_away_nothing_more_is_read(shop):
    from profiles.models import Profile

    person = shop.person(3)
    assert serving._resolve(serving.Query(profile_id=person), context=True) == (person, False, None)
    grant(person, granted=False)
    assert serving._resolve(serving.Query(profile_id=person), context=True) == (person, False, None)
    survivor, merged = shop.person(0), shop.person(11)
    Profile.objects.filter(pk=merged).update(merged_into=survivor)
    assert serving._resolve(serving.Query(profile_id=merged), context=True) == (survivor, False, None)
    grant(survivor)
    assert serving._resolve(serving.Query(profile_id=merged), context=True) == (survivor, True, None)
    assert serving._resolve(serving.Query(user_id="nobody"), context=True) == (None, False, None)
    with pytest.raises(serving.UnknownProfile):
        serving._resolve(serving.Query(profile_id="00000000-0000-0000-0000-000000000001"), context=True)
