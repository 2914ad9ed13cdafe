"""Privacy (export = recommendations shown; erase = served log and the person's rows in the models)
and outcomes (impressions and clicks joined to the served log: CTR per model version)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from recommendations import reports, services
from recommendations.engine.bundle import ModelBundle
from recommendations.models import ModelVersion, RecommendationServed

from .conftest import add_event, grant

pytestmark = pytest.mark.django_db


def entry():
    from consent.privacy import privacy_entries

    return next(e for e in privacy_entries() if e.name == "recommendations")


def test_the_registry_entry_covers_the_served_log():
    found = entry()
    assert RecommendationServed in found.models
    assert found.order == 90


def test_export_lists_the_recommendations_shown(shop, secret_client):
    person = shop.person(0)
    grant(person)
    body = secret_client.get("/api/v1/recommendations/", {"profile_id": person, "placement": "home"}).json()
    exported = entry().export([person])
    assert [row["recommendation_id"] for row in exported["recommendations_shown"]] == [body["recommendation_id"]]
    shown = exported["recommendations_shown"][0]
    assert shown["items"] == [item["sku"] for item in body["items"]]
    assert (shown["placement"], shown["personalised"], shown["model_version"]) == ("home", True, shop.version.pk)


def test_erase_removes_the_person_from_the_active_model_and_the_log(
    shop, secret_client, settings, django_capture_on_commit_callbacks
):
    settings.RECS_VERSION_CHECK_SECONDS = 0
    person, other = shop.person(0), shop.person(1)
    grant(person)
    grant(other)
    secret_client.get("/api/v1/recommendations/", {"profile_id": person})
    secret_client.get("/api/v1/recommendations/", {"profile_id": other})
    before = ModelBundle.from_bytes(bytes(ModelVersion.objects.get(pk=shop.version.pk).artifact))
    assert before.known_user(person) and before.known_user(other)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        entry().erase([person])

    version = ModelVersion.objects.get(pk=shop.version.pk)
    after = ModelBundle.from_bytes(bytes(version.artifact))
    assert not after.known_user(person)
    assert after.known_user(other)
    assert version.artifact_revision == 2
    assert cache.get(services.ACTIVE_KEY) == f"{version.pk}:2"  # every server reloads it
    assert not RecommendationServed.objects.filter(profile_id=person).exists()
    assert RecommendationServed.objects.filter(profile_id=other).count() == 1
    # the serving process now answers from the erased model: nothing it knew of the person is left
    # (their orders are still events here: the profiles eraser runs after this one in a real request)
    from recommendations import serving

    model, _ = serving.current()
    assert model.revision == 2 and not model.bundle.known_user(person)


def test_ctr_per_model_version_joins_impressions_and_clicks(shop, secret_client):
    person = shop.person(0)
    grant(person)
    ids = [
        secret_client.get("/api/v1/recommendations/", {"profile_id": person}).json()["recommendation_id"]
        for _ in range(4)
    ]
    now = timezone.now()
    for rid in ids[:3]:  # three lists were seen, one of them clicked
        add_event(shop.source, person, "Recommendation Viewed", {"recommendation_id": rid}, now)
    add_event(shop.source, person, "Product Clicked", {"recommendation_id": ids[0], "product_id": "BEA-1"}, now)
    add_event(shop.source, person, "Product Clicked", {"recommendation_id": ids[0], "product_id": "BOO-1"}, now)
    add_event(shop.source, person, "Product Clicked", {"product_id": "BOO-1"}, now)  # not from a recommendation
    table = reports.ctr_by_model_version()
    assert table[shop.version.pk] == {"served": 4, "seen": 3, "clicked": 1, "ctr": round(1 / 3, 4)}


def test_ctr_is_shown_in_admin(shop, admin_client):
    response = admin_client.get("/admin/recommendations/modelversion/")
    assert response.status_code == 200
    assert b"CTR" in response.content
    detail = admin_client.get(f"/admin/recommendations/modelversion/{shop.version.pk}/change/")
    assert detail.status_code == 200
