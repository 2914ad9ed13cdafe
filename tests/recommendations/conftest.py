"""Fixtures of the recommendations tests: a small shop (catalog, people, orders and views stored as
real events), a trained bundle published as the active model, consent helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone

CATALOG = [
    # sku, title, category, in stock
    ("ELE-1", "Aurora Noise-cancelling Headphones", "electronics > audio", True),
    ("ELE-2", "Volt Smart Speaker", "electronics > audio", True),
    ("ELE-3", "Pixel Travel Charger", "electronics", True),
    ("ELE-4", "Nimbus E-reader", "electronics", False),  # out of stock
    ("BEA-1", "Lumen Face Cleanser", "beauty", True),
    ("BEA-2", "Lumen Hair Oil", "beauty", True),
    ("BEA-3", "Rose Mascara", "beauty", True),
    ("BOO-1", "The Brain at Rest", "books", True),
    ("BOO-2", "Empires of Trade", "books", True),
    ("BOO-3", "Learn Python in a Weekend", "books", True),
    ("TOY-1", "Bricktopia Building Block Set", "toys", True),
    ("TOY-2", "Plushville Plush Bear", "toys", True),
]

# what each shopper bought (days ago); popularity: ELE-1 > BOO-1 > BEA-1 > ELE-2 > TOY-1 …
ORDERS = [
    [("ELE-1", 40), ("BEA-1", 40)],
    [("ELE-1", 35), ("BOO-1", 20)],
    [("ELE-1", 30), ("BOO-1", 25), ("TOY-1", 5)],
    [("ELE-1", 28), ("ELE-2", 28)],
    [("BOO-1", 27), ("BEA-1", 12)],
    [("ELE-4", 26), ("ELE-1", 3)],
    [("BEA-1", 24), ("BEA-2", 24), ("ELE-2", 9)],
    [("BOO-2", 23), ("BOO-1", 8)],
    [("TOY-1", 22), ("TOY-2", 22)],
    [("ELE-3", 21), ("ELE-1", 14)],
]


# The recipe the refresh trains in these tests (RECS_TRAIN_PARAMS): the learned hybrid needs more
# history than a twelve-person shop has, so the buy-again recommender answers, with the others beside
# it. Its scores on this shop's holdout: popularity 0.63 > buy_again 0.49 > item_item 0.38 (ndcg@10).
TEST_RECOMMENDERS = ["popularity", "trending", "buy_again", "item_item", "content", "session"]
TEST_PARAMS = {"primary": "buy_again", "recommenders": TEST_RECOMMENDERS}
BETTER_PARAMS = {"primary": "popularity", "recommenders": TEST_RECOMMENDERS}
WORSE_PARAMS = {"primary": "item_item", "recommenders": TEST_RECOMMENDERS}


@pytest.fixture(autouse=True)
def _test_recipe(settings):
    settings.RECS_TRAIN_PARAMS = TEST_PARAMS
    settings.RECS_SERVED_LOG_ASYNC = False  # the log is asserted right after the request (see test_serving)


@pytest.fixture(autouse=True)
def _purposes(db):
    """The consent purposes (seeded by migration; transactional tests flush them)."""
    from consent.services import purposes_ensure

    purposes_ensure()


@pytest.fixture(autouse=True)
def _fresh_runtime():
    """Each test starts with a serving process that has loaded nothing yet."""
    from recommendations import services, serving

    serving.runtime.reset()
    services._seen_skus.clear()
    yield
    serving.runtime.reset()
    services._seen_skus.clear()


@dataclass
class Shop:
    source: object
    people: list[str] = field(default_factory=list)
    version: object = None

    def person(self, n: int) -> str:
        return self.people[n]


def add_event(source, profile_id, name: str, properties: dict, at, **extra):
    from profiles.models import Event

    return Event.objects.create(
        source=source,
        message_id=str(uuid.uuid4()),
        profile_id=profile_id,
        type="track",
        name=name,
        properties=properties,
        occurred_at=at,
        received_at=at,
        **extra,
    )


def grant(profile_id: str, granted: bool = True) -> None:
    from consent.services import consent_record

    consent_record(profile_id=profile_id, choices={"personalisation": granted}, source="api")


def consent_to_training() -> None:
    """Every shopper without a personalisation answer allows it: training leaves out people who did
    not agree (issue 11), so tests that train on the shop's orders record the agreement first."""
    from consent.models import ConsentState
    from consent.services import consent_records_bulk, purposes_ensure
    from profiles.models import Profile

    purposes_ensure()
    answered = ConsentState.objects.filter(purpose__key="personalisation").values("profile_id")
    ids = Profile.objects.filter(merged_into__isnull=True).exclude(pk__in=answered).values_list("pk", flat=True)
    now = timezone.now()
    consent_records_bulk(entries=[(str(pk), {"personalisation": True}, now, {}) for pk in ids], source="api")


def make_products() -> None:
    from recommendations.services import product_upsert_many

    product_upsert_many(
        items=[{"sku": s, "title": t, "category": c, "in_stock": i, "price": 10} for s, t, c, i in CATALOG]
    )


def make_people(source, n: int) -> list[str]:
    from profiles.models import Profile

    now = timezone.now()
    return [str(Profile.objects.create(first_seen_at=now, last_seen_at=now).pk) for _ in range(n)]


def store_orders(source, people: list[str]) -> None:
    now = timezone.now()
    titles = {s: t for s, t, _, _ in CATALOG}
    categories = {s: c for s, _, c, _ in CATALOG}
    for person, orders in zip(people, ORDERS, strict=False):
        for n, (sku, days) in enumerate(orders):
            add_event(
                source,
                person,
                "Order Completed",
                {
                    "order_id": f"o-{person[:8]}-{n}",
                    "products": [
                        {
                            "product_id": sku,
                            "name": titles[sku],
                            "category": categories[sku],
                            "price": 10,
                            "quantity": 1,
                        }
                    ],
                },
                now - timedelta(days=days),
            )


def train_from_events(params: dict | None = None):
    """A bundle trained on the shop's orders (ORDERS), as the refresh would from the events."""
    from recommendations.engine.bundle import train_bundle
    from recommendations.engine.data import Catalog, Interactions
    from recommendations.models import Product

    rows = []
    now = timezone.now()
    people = [str(pk) for pk in _people_with_orders()]
    for person, orders in zip(people, ORDERS, strict=False):
        for n, (sku, days) in enumerate(orders):
            rows.append((person, sku, "purchase", 1.0, (now - timedelta(days=days)).timestamp(), f"o-{person[:8]}-{n}"))
    data = Interactions.from_rows(rows)
    products = list(Product.objects.values_list("sku", "title", "category", "in_stock"))
    catalog = Catalog(
        items=[p[0] for p in products],
        title=[p[1] for p in products],
        category=[p[2] for p in products],
        in_stock=[p[3] for p in products],
    )
    return train_bundle(data=data, catalog=catalog, params=params or TEST_PARAMS, now=now.timestamp())


def _people_with_orders() -> list:
    from profiles.models import Event

    seen: dict = {}
    for pid in Event.objects.filter(name="Order Completed").order_by("id").values_list("profile_id", flat=True):
        seen.setdefault(pid, None)
    return list(seen)


def publish(bundle, *, params: dict | None = None, context_stats: dict | None = None):
    """Store a bundle as a model version and make it the active one (through the registry service)."""
    from recommendations.models import ModelStatus, ModelVersion
    from recommendations.services import model_artifact_store, model_version_promote

    version = ModelVersion.objects.create(
        params=params or TEST_PARAMS,
        status=ModelStatus.CANDIDATE,
        context_stats=context_stats or {},
        progress=1.0,
        finished_at=timezone.now(),
        created_by="tests",
    )
    model_artifact_store(version_id=version.pk, parts=bundle.to_parts())
    return model_version_promote(version=version, by="tests")


@pytest.fixture
def shop_data(db) -> Shop:
    """Products, twelve people (the last two without orders) and their orders as stored events."""
    from profiles.services import source_create

    source, _ = source_create(name="shop")
    make_products()
    people = make_people(source, len(ORDERS) + 2)
    store_orders(source, people)
    return Shop(source=source, people=people)


@pytest.fixture
def shop(shop_data) -> Shop:
    """The shop with a model trained on its orders as the active version."""
    shop_data.version = publish(train_from_events())
    return shop_data
