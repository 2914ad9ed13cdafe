"""The four segments of the issue on real rows, through both evaluation paths and the refresh."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from profiles.traits import traits_refresh
from segments.models import Segment
from segments.rules.compile import members_queryset
from segments.rules.validate import definition_errors
from segments.selectors import segment_member_ids
from segments.services import profile_segments_evaluate, segment_create, segments_index
from tests.segments import examples
from tests.segments import factories as f

pytestmark = pytest.mark.django_db


def both_paths(definition: dict, now) -> set[str]:
    """Members by the SQL path, after checking the single-profile path agrees for everyone."""
    seg = segment_create(slug="probe", name="probe", definition=definition, refresh="no")
    sql = {str(pk) for pk in members_queryset(definition, now=now).values_list("pk", flat=True)}
    entry = segments_index()[seg.pk]
    from profiles.models import Profile

    single = {
        str(pk)
        for pk in Profile.objects.filter(merged_into__isnull=True).values_list("pk", flat=True)
        if profile_segments_evaluate(profile_id=str(pk), segments=[entry], at=now)[seg.pk]
    }
    assert sql == single
    seg.delete()
    return sql


def order(p, at, *categories_prices):
    products = [{"category": c, "price": price, "quantity": 1} for c, price in categories_prices]
    return f.event(
        p, "Order Completed", at, properties={"revenue": sum(x for _, x in categories_prices), "products": products}
    )


def test_the_four_examples_are_valid():
    for definition in (
        examples.HOT_LEADS,
        examples.ENGAGED_CART_ABANDONERS,
        examples.MOBILE_EVENING_LUXURY,
        examples.AT_RISK_VIPS,
    ):
        assert definition_errors(definition) == {}


def test_hot_leads():
    now = timezone.now()
    hot, bought, few, old = (f.profile() for _ in range(4))
    for p in (hot, bought, few):
        for i in range(3 if p is not few else 2):
            f.event(p, "Product Viewed", now - timedelta(hours=2 + i), properties={"category": "outdoor"})
    f.event(hot, "Product Viewed", now - timedelta(hours=1), properties={"category": "books"})
    order(hot, now - timedelta(hours=3), ("books", 10))  # bought, but nothing outdoor
    order(bought, now - timedelta(hours=1), ("books", 10), ("outdoor", 80))
    for i in range(3):  # viewed three, but two days ago
        f.event(old, "Product Viewed", now - timedelta(days=2, hours=i), properties={"category": "outdoor"})
    assert both_paths(examples.HOT_LEADS, now) == {str(hot.pk)}


def test_engaged_cart_abandoners_top_quarter_by_sessions():
    now = timezone.now()
    people = [f.profile(computed={"sessions": n}) for n in (1, 2, 3, 4, 5, 6, 7, 8)]
    for p in people:
        f.event(p, "Product Added", now - timedelta(days=2))
    order(people[7], now - timedelta(days=1), ("books", 10))  # the most engaged one bought
    # top 25 % by sessions: 7 and 8 sessions; the one with 8 bought -> only the one with 7
    assert both_paths(examples.ENGAGED_CART_ABANDONERS, now) == {str(people[6].pk)}


def test_mobile_evening_luxury_browsers():
    now = timezone.now()
    yes, desktop, morning, cheap = (f.profile() for _ in range(4))
    view = "Product Viewed"
    f.event(
        yes, view, now - timedelta(days=3), properties={"category": "luxury bags"}, device_type="mobile", local_hour=21
    )
    f.event(
        desktop,
        view,
        now - timedelta(days=3),
        properties={"category": "luxury bags"},
        device_type="desktop",
        local_hour=21,
    )
    f.event(
        morning,
        view,
        now - timedelta(days=3),
        properties={"category": "luxury watches"},
        device_type="mobile",
        local_hour=9,
    )
    f.event(cheap, view, now - timedelta(days=3), properties={"category": "books"}, device_type="mobile", local_hour=20)
    assert both_paths(examples.MOBILE_EVENING_LUXURY, now) == {str(yes.pk)}


def test_at_risk_vips_from_real_computed_traits():
    now = timezone.now()
    vip_gone, vip_active, small_gone = (f.profile(at=now - timedelta(days=300)) for _ in range(3))
    order(vip_gone, now - timedelta(days=200), ("luxury watches", 450))
    order(vip_gone, now - timedelta(days=120), ("luxury bags", 300))
    order(vip_active, now - timedelta(days=200), ("luxury watches", 700))
    order(vip_active, now - timedelta(days=10), ("books", 20))
    order(small_gone, now - timedelta(days=150), ("books", 40))
    traits_refresh(profile_ids=[vip_gone.pk, vip_active.pk, small_gone.pk], now=now)
    assert both_paths(examples.AT_RISK_VIPS, now) == {str(vip_gone.pk)}


def test_refresh_materialises_the_example():
    now = timezone.now()
    p = f.profile()
    for i in range(3):
        f.event(p, "Product Viewed", now - timedelta(hours=i + 1), properties={"category": "outdoor"})
    seg = segment_create(slug="hot-leads", name="Hot leads", definition=examples.HOT_LEADS, refresh="now")
    assert segment_member_ids(segment=seg) == [str(p.pk)]
    assert Segment.objects.get(pk=seg.pk).size == 1
