"""``interactions_extract`` against events stored by the real ingestion path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone

from profiles.identity.merge import profile_merge
from profiles.models import Event, Identifier
from profiles.services import source_create
from profiles.tracking.ingest import events_ingest
from profiles.tracking.validate import clean_event
from recommendations.engine.data import CART, PURCHASE, VIEW
from recommendations.selectors import interactions_extract

from .conftest import consent_to_training

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def track(n: int, name: str, properties: dict, *, user_id: str = "", anonymous_id: str = "", at=T0) -> dict:
    payload = {"type": "track", "event": name, "properties": properties, "messageId": f"m{n}"}
    payload["timestamp"] = at.isoformat()
    if user_id:
        payload["userId"] = user_id
    if anonymous_id:
        payload["anonymousId"] = anonymous_id
    return payload


def ingest(*payloads):
    source, _ = source_create(name=f"shop-{len(payloads)}-{payloads[0]['messageId']}")
    now = timezone.now()
    events_ingest(source=source, events=[clean_event(p, received_at=now) for p in payloads])
    return source


def profile_id(kind: str, value: str) -> str:
    return str(Identifier.objects.get(kind=kind, value=value).profile_id)


@pytest.mark.django_db
def test_extract_reads_orders_views_and_cart_additions_for_live_profiles():
    # given an anonymous visitor who viewed and carted, then logged in elsewhere as alice, and bob
    ingest(
        track(
            1,
            "Product Viewed",
            {"sku": "S1", "name": "Red Scarf", "category": "Fashion > Scarves", "price": 12.5},
            anonymous_id="anon-1",
            at=T0,
        ),
        track(
            2, "Product Added", {"product_id": "S2", "quantity": 2}, anonymous_id="anon-1", at=T0 + timedelta(minutes=1)
        ),
        track(
            3,
            "Order Completed",
            {
                "order_id": "o-1",
                "products": [
                    {"product_id": "S1", "sku": "S1", "quantity": 2, "price": 12.5, "category": "Fashion > Scarves"},
                    {"sku": "S3", "quantity": "1", "name": "Blue Hat"},
                    {"sku": "S4", "quantity": 0},  # nothing bought
                    {"name": "no id at all"},
                ],
            },
            user_id="alice",
            at=T0 + timedelta(days=1),
        ),
        track(
            4,
            "Order Completed",
            {"order_id": "o-2", "products": [{"product_id": "S2"}]},
            user_id="bob",
            at=T0 + timedelta(days=2),
        ),
        track(5, "Order Completed", {"order_id": "o-3", "products": "not a list"}, user_id="bob", at=T0),
        track(6, "Signed Up", {"sku": "S9"}, user_id="bob", at=T0),
    )
    alice, bob, anon = (
        profile_id("user_id", "alice"),
        profile_id("user_id", "bob"),
        profile_id("anonymous_id", "anon-1"),
    )
    loser = Identifier.objects.get(value="anon-1").profile
    profile_merge(winner=Identifier.objects.get(value="alice").profile, loser=loser, reason="test")
    # an event that reached the merged-away profile later still belongs to the live one
    Event.objects.filter(message_id="m2").update(profile=loser)
    consent_to_training()

    data, catalog = interactions_extract()
    chunked, _ = interactions_extract(chunk_rows=2)  # the server-side cursor, two rows at a time

    assert sorted(data.users) == sorted([alice, bob]) and anon not in set(data.users)

    def table(d):
        return sorted(
            (str(d.users[u]), str(d.items[i]), int(k), float(q), float(t), int(o))
            for u, i, k, q, t, o in zip(d.user, d.item, d.kind, d.quantity, d.ts, d.order, strict=True)
        )

    rows = table(data)
    assert rows == table(chunked)
    day = T0.timestamp()
    codes = {(r[1], r[2]): r[5] for r in rows}
    o1, o2, none = codes[("S1", PURCHASE)], codes[("S2", PURCHASE)], codes[("S1", VIEW)]
    assert codes[("S3", PURCHASE)] == o1 and len({o1, o2, none}) == 3 and codes[("S2", CART)] == none
    assert [r[:5] for r in rows] == sorted(
        [
            (alice, "S1", VIEW, 1.0, day),
            (alice, "S2", CART, 2.0, day + 60),
            (alice, "S1", PURCHASE, 2.0, day + 86400),
            (alice, "S3", PURCHASE, 1.0, day + 86400),
            (bob, "S2", PURCHASE, 1.0, day + 2 * 86400),
        ]
    )
    # the catalog says what events said of each item
    at = {sku: n for n, sku in enumerate(catalog.items)}
    assert list(catalog.items) == list(data.items)
    assert catalog.category[at["S1"]] == "Fashion > Scarves" and catalog.price[at["S1"]] == 12.5
    assert catalog.title[at["S3"]] == "Blue Hat" and np.isnan(catalog.price[at["S3"]])


@pytest.mark.django_db
def test_extract_windows_and_sources_and_the_product_table():
    from recommendations.models import Product

    first = ingest(track(11, "Order Completed", {"order_id": "a", "products": [{"sku": "P1"}]}, user_id="u", at=T0))
    ingest(
        track(12, "Product Viewed", {"sku": "P2"}, user_id="u", at=T0 + timedelta(days=5)),
        track(13, "Product Viewed", {"sku": "P1"}, user_id="v", at=T0 + timedelta(days=9)),
    )
    Product.objects.create(sku="P1", title="Catalogue title", brand="Acme", price=9, in_stock=False)
    consent_to_training()

    data, catalog = interactions_extract(since=T0 + timedelta(days=1), until=T0 + timedelta(days=6))
    assert list(data.items) == ["P2"] and len(data) == 1 and data.kind[0] == VIEW

    data, catalog = interactions_extract(source_ids=[first.pk])
    assert list(data.items) == ["P1"] and data.kind.tolist() == [PURCHASE]
    assert catalog.title[0] == "Catalogue title" and catalog.brand[0] == "Acme"
    assert catalog.price[0] == 9.0 and not catalog.in_stock[0]

    data, _ = interactions_extract(since=T0 + timedelta(days=100))
    assert len(data) == 0 and data.n_users == 0

    # a window: the last 5 days before the latest interaction (day 9)
    data, _ = interactions_extract(window_days=5)
    assert len(data) == 2 and sorted(data.items) == ["P1", "P2"] and PURCHASE not in data.kind.tolist()


@pytest.mark.django_db
def test_training_sees_only_prices_from_before_its_cutoff():
    from recommendations.engine.bundle import train_bundle
    from recommendations.engine.evaluate import holdout_split
    from recommendations.models import Product

    events = []
    for n in range(6):
        price = 10 if n < 4 else 99  # the last two orders (the test period) say a new price
        order = {"order_id": f"o{n}", "products": [{"sku": "P1", "price": price}, {"sku": "P2", "price": 5}]}
        events.append(track(40 + n, "Order Completed", order, user_id=f"u{n % 3}", at=T0 + timedelta(days=10 * n)))
    ingest(*events)
    Product.objects.create(sku="P1", title="P1", price=99)  # the catalog says today's price
    consent_to_training()

    data, catalog = interactions_extract()
    assert data.price is not None and sorted(set(data.price.tolist())) == [5.0, 10.0, 99.0]
    train, truth = holdout_split(data, 15)
    bundle = train_bundle(data=train, catalog=catalog, params={}, now=truth.cutoff)
    at = {sku: n for n, sku in enumerate(bundle.items)}
    assert bundle.catalog.price[at["P1"]] == 10.0  # not the 99 of the test period nor the catalog's
    assert bundle.recommenders["hybrid"].stats.item_price[at["P1"]] == 10.0
