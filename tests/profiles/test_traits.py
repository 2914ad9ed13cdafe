"""Computed traits: exact values for a known history, and the per-event and nightly paths agree."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from profiles import services
from profiles.models import PendingWork, Profile
from profiles.traits import compute
from tests.profiles.helpers import call, writer

pytestmark = pytest.mark.django_db


def test_values_for_a_known_history():
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    day = timedelta(days=1)
    events = [
        ("track", "Product Viewed", {"category": "outdoor"}, now - 100 * day, "mobile", 20),
        ("track", "Product Viewed", {"category": "outdoor"}, now - 100 * day + timedelta(minutes=5), "mobile", 20),
        (
            "track",
            "Order Completed",
            {"revenue": "120.50", "products": [{"category": "outdoor"}]},
            now - 100 * day,
            "mobile",
            20,
        ),
        ("track", "Product Viewed", {"category": "kitchen"}, now - 40 * day, "desktop", 9),
        (
            "track",
            "Order Completed",
            {"products": [{"price": 10, "quantity": 3, "category": "kitchen"}, {"price": 5.5, "category": "kitchen"}]},
            now - 20 * day,
            "mobile",
            21,
        ),
        ("track", "Product Added", {}, now - 2 * day, "mobile", 20),
        ("page", "", None, now - 2 * day, "mobile", 20),
    ]
    traits = compute(sorted(events, key=lambda e: e[3]), first_seen=now - 100 * day, last_seen=now - 2 * day, now=now)
    assert traits["orders"] == traits["frequency"] == 2
    assert traits["revenue"] == traits["monetary"] == 156.0
    assert traits["avg_order_value"] == 78.0
    assert traits["recency_days"] == 20
    assert (traits["orders_30d"], traits["orders_90d"], traits["orders_365d"]) == (1, 1, 2)
    assert (traits["revenue_30d"], traits["revenue_90d"], traits["revenue_365d"]) == (35.5, 35.5, 156.0)
    assert traits["category_affinity"] == {
        "views": {"outdoor": 0.6667, "kitchen": 0.3333},
        "purchases": {"kitchen": 0.6667, "outdoor": 0.3333},
    }
    assert traits["top_category"] == "kitchen"  # 2 purchases + 1 view vs 1 purchase + 2 views: tie -> name order
    assert traits["cart_abandoned"] is True
    assert traits["preferred_device"] == "mobile" and traits["preferred_hour"] == 20
    assert traits["sessions"] == 4  # -100d (3 events within 30 min), -40d, -20d, -2d
    assert traits["sessions_30d"] == 2
    assert 0 < traits["engagement_score"] < 100


def test_no_orders_gives_empty_rfm():
    now = timezone.now()
    traits = compute([], first_seen=now, last_seen=now, now=now)
    assert (traits["orders"], traits["revenue"], traits["recency_days"], traits["cart_abandoned"]) == (
        0,
        0.0,
        None,
        False,
    )


def test_per_event_path_and_nightly_batch_give_the_same_values(write_key):
    client = writer(write_key)
    base = timezone.now() - timedelta(days=50)
    for i in range(6):
        user = f"u{i % 3}"
        call(
            client,
            "track",
            userId=user,
            event="Product Viewed",
            properties={"category": ["a", "b"][i % 2]},
            timestamp=(base + timedelta(days=i * 7)).isoformat(),
            context={"timezone": "Europe/London"},
        )
        call(
            client,
            "track",
            userId=user,
            event="Order Completed",
            properties={"revenue": 10 + i},
            timestamp=(base + timedelta(days=i * 7, minutes=3)).isoformat(),
        )
    # per-event path: the follow-up work queued by ingestion
    assert PendingWork.objects.count() == 3
    assert services.pending_process() == 3
    assert PendingWork.objects.count() == 0
    incremental = {p.pk: p.computed for p in Profile.objects.all()}
    by_user = {p.identifiers.get(kind="user_id").value: p.computed for p in Profile.objects.all()}
    # u0 bought for 10 + 13, u1 for 11 + 14, u2 for 12 + 15; views alternate categories a/b
    assert {u: (c["orders"], c["revenue"], c["avg_order_value"]) for u, c in by_user.items()} == {
        "u0": (2, 23.0, 11.5),
        "u1": (2, 25.0, 12.5),
        "u2": (2, 27.0, 13.5),
    }
    assert by_user["u0"]["category_affinity"]["views"] == {"a": 0.5, "b": 0.5}
    assert by_user["u0"]["preferred_hour"] is not None
    # nightly path over everyone
    Profile.objects.update(computed={})
    assert services.traits_recompute_all() == 3
    nightly = {p.pk: p.computed for p in Profile.objects.all()}
    for pid in incremental:  # identical except engagement decay between the two runs' clocks
        a, b = dict(incremental[pid]), dict(nightly[pid])
        assert abs(a.pop("engagement_score") - b.pop("engagement_score")) < 0.01
        assert a == b
