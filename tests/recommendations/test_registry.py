"""The model registry: refresh (extract → holdout → train → evaluate → promote only a better model),
rollback, hot swap through the version key, fallback to PostgreSQL, and products from the extract."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from recommendations import services, serving
from recommendations.models import ModelStatus, ModelVersion, Product

from .conftest import BETTER_PARAMS, WORSE_PARAMS, add_event, consent_to_training

pytestmark = pytest.mark.django_db


def refresh(params: dict | None = None, by: str = "tests") -> ModelVersion:
    consent_to_training()
    version = services.model_refresh_start(requested_by=by, params=params, queue=False)
    return services.model_refresh_execute(version_id=version.pk)


def test_first_refresh_trains_evaluates_and_publishes(shop_data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        version = refresh()
    assert version.status == ModelStatus.ACTIVE, version.error
    assert version.progress == 1.0
    assert version.promoted_by == "refresh"
    assert 0 < version.metrics["ndcg@10"] <= 1
    assert version.metrics["users_evaluated"] == 6  # buyers in the last 14 days who also bought before
    assert version.data_stats["interactions"] == 22
    assert version.holdout_since > version.data_since
    assert version.artifact_bytes > 0
    assert version.artifact_revision == 2  # the evaluated model, then its retrain on all data
    assert cache.get(services.ACTIVE_KEY) == f"{version.pk}:2"
    assert version.data_stats["seconds"]["published"] <= version.data_stats["seconds"]["total"]
    assert "first model" in version.decision


def test_a_worse_candidate_stays_candidate_and_a_better_one_is_promoted(shop_data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = refresh()
        worse = refresh(WORSE_PARAMS)  # item-item ranks this holdout worse
    assert worse.status == ModelStatus.CANDIDATE
    assert worse.metrics["ndcg@10"] < worse.baseline_metrics["ndcg@10"]
    assert worse.baseline_metrics["active_version"] == first.pk
    assert "does not beat" in worse.decision
    first.refresh_from_db()
    assert first.status == ModelStatus.ACTIVE
    assert cache.get(services.ACTIVE_KEY) == f"{first.pk}:{first.artifact_revision}"

    with django_capture_on_commit_callbacks(execute=True):
        better = refresh(BETTER_PARAMS)
    assert better.status == ModelStatus.ACTIVE, better.decision
    assert better.metrics["ndcg@10"] > better.baseline_metrics["ndcg@10"]
    first.refresh_from_db()
    assert (first.status, first.retired_at is not None) == (ModelStatus.RETIRED, True)
    assert cache.get(services.ACTIVE_KEY) == f"{better.pk}:{better.artifact_revision}"


def test_the_same_recipe_on_fresher_data_is_promoted(shop_data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = refresh()
        second = refresh()
    assert second.status == ModelStatus.ACTIVE
    assert "same recipe" in second.decision
    first.refresh_from_db()
    assert first.status == ModelStatus.RETIRED


def test_rollback_reactivates_a_retired_version(shop_data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = refresh()
        second = refresh(BETTER_PARAMS)
        first.refresh_from_db()
        with pytest.raises(services.RegistryError):
            services.model_version_rollback(version=second, by="admin")  # active, not retired
        services.model_version_rollback(version=first, by="admin")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.promoted_by) == (ModelStatus.ACTIVE, "admin")
    assert second.status == ModelStatus.RETIRED
    assert cache.get(services.ACTIVE_KEY) == f"{first.pk}:{first.artifact_revision}"
    assert ModelVersion.objects.filter(status=ModelStatus.ACTIVE).count() == 1


def test_a_failed_refresh_says_why(db):
    version = refresh()
    assert version.status == ModelStatus.FAILED
    assert "No interactions" in version.error
    assert services.model_refresh_execute(version_id=version.pk).status == ModelStatus.FAILED  # idempotent


def test_a_refresh_with_orders_but_no_consenting_shopper_says_so(shop_data):
    from django.utils import timezone

    from consent.services import consent_records_bulk, purposes_ensure

    # given orders stored, but every shopper has declined personalisation
    purposes_ensure()
    now = timezone.now()
    consent_records_bulk(entries=[(pid, {"personalisation": False}, now, {}) for pid in shop_data.people], source="api")
    version = refresh()
    # then the refresh fails saying that consent, not data, is missing
    assert version.status == ModelStatus.FAILED
    assert "none of people who allow personalisation" in version.error


def test_serving_switches_to_a_new_active_version_without_restart(
    shop_data, secret_client, django_capture_on_commit_callbacks, settings
):
    settings.RECS_VERSION_CHECK_SECONDS = 0  # check the key on every request (production: once a second)
    with django_capture_on_commit_callbacks(execute=True):
        first = refresh()
    assert secret_client.get("/api/v1/recommendations/").json()["model_version"] == first.pk
    with django_capture_on_commit_callbacks(execute=True):
        second = refresh(BETTER_PARAMS)
    assert second.status == ModelStatus.ACTIVE
    assert secret_client.get("/api/v1/recommendations/").json()["model_version"] == second.pk
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_rollback(version=ModelVersion.objects.get(pk=first.pk), by="admin")
    assert secret_client.get("/api/v1/recommendations/").json()["model_version"] == first.pk


def test_with_redis_down_serving_reads_the_active_version_from_postgresql(
    shop_data, secret_client, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        version = refresh()
    settings.RECS_VERSION_CHECK_SECONDS = 0
    dead = {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}
    with override_settings(CACHES={"default": dead}):
        from django.core.cache import cache as dead_cache

        with pytest.raises(Exception):  # noqa: B017 - proves Redis really is unreachable here
            dead_cache.get("x")
        model, _ = serving.current()
        assert model is not None and model.version_id == version.pk


def test_refresh_creates_products_known_only_from_imported_orders(shop_data):
    # an order stored without the tracking hooks (as profiles.bulk.import_orders does)
    from django.utils import timezone

    add_event(
        shop_data.source,
        shop_data.person(0),
        "Order Completed",
        {"order_id": "bulk-1", "products": [{"product_id": "MYS-1", "name": "Mystery Box", "price": 9, "quantity": 1}]},
        timezone.now(),
    )
    assert not Product.objects.filter(sku="MYS-1").exists()
    version = refresh()
    assert version.status == ModelStatus.ACTIVE, version.error
    product = Product.objects.get(sku="MYS-1")
    assert (product.title, product.first_seen_source) == ("Mystery Box", "import")
    assert version.data_stats["products_created"] == 1


def test_context_statistics_come_from_the_events(shop_data):
    from django.utils import timezone

    now = timezone.now()
    for n in range(60):
        add_event(
            shop_data.source,
            shop_data.person(n % 10),
            "Product Viewed",
            {"product_id": "TOY-1" if n % 3 else "ELE-1", "category": "toys" if n % 3 else "electronics"},
            now,
            device_type="mobile",
            local_hour=20,
        )
    stats = services.context_stats_compute(since=now.replace(year=now.year - 1))
    assert stats["device"]["mobile"] == {"toys": 1.0, "electronics": 1.0}  # mobile is all there is
    assert set(stats["daypart"]) == {"evening"}


def test_a_stored_model_is_read_in_chunks_as_it_was_stored(shop, monkeypatch):
    """The item part comes back byte for byte whether it is read as one row or as many small ones
    (a web worker reads it in chunks, so that no connection keeps a buffer as large as a model)."""
    from recommendations import selectors
    from recommendations.models import ModelPeopleShard

    stored = ModelVersion.objects.get(pk=shop.version.pk)
    shards = [
        bytes(s)
        for s in ModelPeopleShard.objects.filter(version=stored).order_by("shard").values_list("data", flat=True)
    ]
    whole = selectors.model_parts_read(version_id=stored.pk)
    monkeypatch.setattr(selectors, "MODEL_READ_CHUNK", 1000)  # the small shop's item part in many rows
    assert len(bytes(stored.artifact)) > 3 * 1000
    chunked = selectors.model_parts_read(version_id=stored.pk)
    for parts in (whole, chunked):
        assert parts["item"] == bytes(stored.artifact) and isinstance(parts["item"], bytes)
        assert parts["people"] == shards and len(shards) == stored.people_shards
        assert (parts["token"], parts["revision"]) == (stored.artifact_token, stored.artifact_revision)
    ModelVersion.objects.filter(pk=stored.pk).update(artifact=None)
    assert selectors.model_parts_read(version_id=stored.pk) is None
    assert selectors.model_parts_read(version_id=stored.pk + 1000) is None
