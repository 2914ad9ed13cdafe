"""Privacy (export = recommendations shown; erase = served log and the person's rows in the models)
and outcomes (impressions and clicks joined to the served log: CTR per model version)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from recommendations import reports, services
from recommendations.models import ModelVersion, PendingModelErasure, RecommendationServed
from recommendations.selectors import model_bundle_load

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
    before = model_bundle_load(version_id=shop.version.pk)
    assert before.known_user(person) and before.known_user(other)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        entry().erase([person])
        # inside the erasure's transaction the artifact is not rewritten: the people are pending
        assert ModelVersion.objects.get(pk=shop.version.pk).artifact_revision == 1
        assert PendingModelErasure.objects.get().profile_ids == [person]
        assert RecommendationServed.objects.filter(profile_id=person).count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        entry().followup()  # what privacy_erase runs after the commit
    assert not PendingModelErasure.objects.exists()

    version = ModelVersion.objects.get(pk=shop.version.pk)
    after = model_bundle_load(version_id=version.pk)
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


@pytest.mark.django_db(transaction=True)
def test_an_erasure_request_is_done_only_after_every_stored_model_forgot_the_person(shop, monkeypatch):
    from consent.models import DataSubjectRequest
    from consent.requests import privacy_request_create, privacy_request_execute

    from .conftest import publish, train_from_events

    person, other = shop.person(0), shop.person(1)
    candidate = publish(train_from_events())  # a second stored model (the first one is retired now)
    seen: list[tuple] = []
    real = services.model_erasures_apply

    def spy():
        # the follow-up runs after the erasure committed, and before the request says done
        request = DataSubjectRequest.objects.get()
        revisions = dict(ModelVersion.objects.values_list("pk", "artifact_revision"))
        seen.append((request.status, revisions, PendingModelErasure.objects.count()))
        return real()

    monkeypatch.setattr(services, "model_erasures_apply", spy)
    request = privacy_request_create(
        kind="erasure", channel="api", requested_by="tests", profile_id=person, verified=True
    )
    privacy_request_execute(request_id=str(request.pk))

    request.refresh_from_db()
    assert request.status == "done", request.error
    assert seen == [("running", {shop.version.pk: 1, candidate.pk: 1}, 1)]
    for version in ModelVersion.objects.all():
        bundle = model_bundle_load(version_id=version.pk)
        assert not bundle.known_user(person) and bundle.known_user(other)
        assert version.artifact_revision == 2
    assert cache.get(services.ACTIVE_KEY) == f"{candidate.pk}:2"
    assert set(request.result["followups"]["recommendations"]["models_updated"]) == {shop.version.pk, candidate.pk}
    assert not PendingModelErasure.objects.exists()


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
