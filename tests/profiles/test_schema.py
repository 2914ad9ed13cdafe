"""The schema registry: event names, property keys (with samples) and trait keys the shop sends,
kept current by ingestion through the on_events_stored hook, recounted by schema_rebuild."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from profiles.models import SchemaItem
from profiles.schema import schema_rebuild, schema_record, schema_suggest, schema_summary
from tests.profiles.helpers import batch, writer

AT = datetime(2026, 1, 5, 10, tzinfo=UTC)


def _event(name, properties=None, type="track", profile_id="p1"):
    return {"profile_id": profile_id, "type": type, "name": name, "properties": properties or {}, "occurred_at": AT}


def test_summary_counts_names_and_keys_with_a_few_distinct_samples():
    summary = schema_summary(
        events=[
            _event("Product Viewed", {"category": "outdoor", "price": 10}),
            _event("Product Viewed", {"category": "kitchen"}),
            _event("Order Completed", {"products": [{"sku": "A", "category": "x"}], "revenue": 5}),
            _event("", type="identify", profile_id="p9"),
        ]
    )
    items = {(k, e, n): (c, s) for k, e, n, c, s in summary["items"]}
    assert items[("event", "", "Product Viewed")] == (2, [])
    assert items[("property", "Product Viewed", "category")] == (2, ["outdoor", "kitchen"])
    assert items[("property", "Order Completed", "products[].category")] == (1, ["x"])
    assert items[("property", "Order Completed", "products")][1] == []  # lists are not sampled
    assert summary["trait_profiles"] == ["p9"]


@pytest.mark.django_db
def test_record_adds_counts_merges_samples_and_keeps_first_and_last_seen():
    later = datetime(2026, 2, 1, tzinfo=UTC)
    schema_record(summary=schema_summary(events=[_event("Product Viewed", {"category": "outdoor"})]))
    second = schema_summary(events=[{**_event("Product Viewed", {"category": "kitchen"}), "occurred_at": later}])
    schema_record(summary=second)
    event = SchemaItem.objects.get(kind="event", name="Product Viewed")
    prop = SchemaItem.objects.get(kind="property", event="Product Viewed", name="category")
    assert (event.count, event.first_seen_at, event.last_seen_at) == (2, AT, later)
    assert prop.samples == ["outdoor", "kitchen"]


@pytest.mark.django_db
def test_rebuild_recounts_from_events_and_live_profiles(write_key):
    batch(
        writer(write_key),
        {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com", "plan": "pro"}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"products": [{"category": "c"}]}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 3}},
    )
    assert schema_rebuild() > 0
    rows = {(i.kind, i.event, i.name): i.count for i in SchemaItem.objects.all()}
    assert rows[("event", "", "Order Completed")] == 2
    assert rows[("property", "Order Completed", "products[].category")] == 1
    assert rows[("property", "Order Completed", "revenue")] == 1
    assert rows[("trait", "", "plan")] == 1 and rows[("trait", "", "email")] == 1
    call_command("schema_rebuild")  # the command does the same, and says how many


def test_suggestion_finds_the_meant_name_and_nothing_for_strangers():
    names = ["Product Viewed", "Order Completed", "Product Added"]
    assert schema_suggest(name="Product Viewd", choices=names) == "Product Viewed"
    assert schema_suggest(name="order completed", choices=names) == "Order Completed"
    assert schema_suggest(name="Newsletter Signup", choices=names) is None


@pytest.mark.django_db(transaction=True)
def test_ingestion_keeps_the_registry_current_through_the_worker(celery_worker, write_key):
    response = batch(
        writer(write_key),
        {"type": "track", "userId": "u7", "event": "Wishlist Added", "properties": {"sku": "SKU-9"}},
        {"type": "identify", "userId": "u7", "traits": {"favourite_colour": "green"}},
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not SchemaItem.objects.filter(kind="trait", name="favourite_colour").exists():
        time.sleep(0.2)
    assert SchemaItem.objects.get(kind="event", name="Wishlist Added").count == 1
    assert SchemaItem.objects.get(kind="property", event="Wishlist Added", name="sku").samples == ["SKU-9"]
    assert SchemaItem.objects.get(kind="trait", name="favourite_colour").samples == ["green"]


@pytest.mark.django_db
def test_the_subscriber_only_appends_and_the_drain_folds_everything_pending():
    from profiles import schema

    queued = []
    original = schema._redis
    from profiles import tasks

    monkey = pytest.MonkeyPatch()
    monkey.setattr(tasks.schema_drain, "apply_async", lambda **kw: queued.append(kw))
    try:
        schema.on_events_stored(events=[_event("Product Viewed", {"category": "outdoor"})])
        schema.on_events_stored(events=[_event("Product Viewed", {"category": "kitchen"})])
    finally:
        monkey.undo()
    assert len(queued) == 1  # one drain scheduled for both batches
    assert not SchemaItem.objects.exists()  # nothing written on the request path
    assert schema.schema_drain() > 0
    prop = SchemaItem.objects.get(kind="property", event="Product Viewed", name="category")
    assert (prop.count, prop.samples) == (2, ["outdoor", "kitchen"])
    assert schema.schema_drain() == 0 and not original().exists(schema.SCHEDULED_KEY)


@pytest.mark.django_db
def test_erasure_scrubs_samples_that_were_still_waiting_for_the_drain(monkeypatch):
    from profiles import schema, tasks
    from profiles.models import Profile

    # given a person's call summarised into Redis, its drain not yet run (erasure seconds after the call)
    monkeypatch.setattr(tasks.schema_drain, "apply_async", lambda **kw: None)
    schema._redis().delete(schema.PENDING_KEY)
    person = Profile.objects.create(traits={"name": "Zelda Quist"}, first_seen_at=AT, last_seen_at=AT)
    schema.on_events_stored(events=[_event("Note Left", {"signed": "Zelda Quist", "mood": "calm"})])

    # when the person is erased, and the drain runs afterwards
    schema.schema_samples_forget(profile_ids=[str(person.pk)])
    schema.schema_drain()

    # then the registry knows the key and the other sample, never the person's value
    item = SchemaItem.objects.get(kind="property", event="Note Left", name="signed")
    assert (item.count, item.samples) == (1, [])
    assert SchemaItem.objects.get(kind="property", event="Note Left", name="mood").samples == ["calm"]
