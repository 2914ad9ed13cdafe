"""Admin (refresh now, promote, rollback, served log read-only) and a refresh through a real Celery worker."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from recommendations import services
from recommendations.models import ModelStatus, ModelVersion

from .conftest import WORSE_PARAMS, consent_to_training, make_people, make_products, store_orders


def refresh(params=None):
    consent_to_training()
    version = services.model_refresh_start(requested_by="tests", params=params, queue=False)
    return services.model_refresh_execute(version_id=version.pk)


@pytest.mark.django_db
def test_admin_promote_and_rollback_go_through_the_registry(
    shop_data, admin_client, django_capture_on_commit_callbacks
):
    first = refresh()
    worse = refresh(WORSE_PARAMS)
    assert worse.status == ModelStatus.CANDIDATE
    url = reverse("admin:recommendations_modelversion_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "promote", "_selected_action": [worse.pk]})
    worse.refresh_from_db()
    first.refresh_from_db()
    assert (worse.status, worse.promoted_by) == (ModelStatus.ACTIVE, "admin")
    assert first.status == ModelStatus.RETIRED
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "rollback", "_selected_action": [first.pk]})
    first.refresh_from_db()
    assert first.status == ModelStatus.ACTIVE
    # a rollback of a version that is not retired is refused with a message
    response = admin_client.post(url, {"action": "rollback", "_selected_action": [first.pk]}, follow=True)
    assert "rollback re-activates a retired version" in response.content.decode()


@pytest.mark.django_db
def test_served_log_is_read_only_in_admin(shop, secret_client, admin_client):
    body = secret_client.get("/api/v1/recommendations/").json()
    url = reverse("admin:recommendations_recommendationserved_change", args=[body["recommendation_id"]])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b'name="placement"' not in response.content  # no form fields
    assert admin_client.get(reverse("admin:recommendations_recommendationserved_add")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_refresh_now_from_admin_runs_on_a_real_celery_worker(celery_worker, admin_client):
    from consent.services import purposes_ensure
    from profiles.services import source_create

    purposes_ensure()
    source, _ = source_create(name="shop")
    make_products()
    store_orders(source, make_people(source, 12))
    consent_to_training()
    response = admin_client.post(reverse("admin:recommendations_modelversion_refresh"))
    assert response.status_code == 302
    version = ModelVersion.objects.get()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        version.refresh_from_db()
        if version.progress >= 1.0 or version.status == ModelStatus.FAILED:
            break
        time.sleep(0.2)
    assert version.status == ModelStatus.ACTIVE, version.error
    assert version.created_by == "admin"
    assert version.artifact_revision == 2  # published after the evaluation, then retrained on all data
    assert version.metrics["ndcg@10"] > 0


@pytest.mark.django_db
def test_business_rules_from_admin_reach_serving(shop, admin_client, secret_client, django_capture_on_commit_callbacks):
    from recommendations import serving
    from recommendations.models import BusinessRule

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:recommendations_businessrule_add"),
            {"kind": "exclude", "category": " electronics ", "factor": "1.5", "placement": "", "is_active": "on"},
        )
    assert response.status_code == 302
    assert BusinessRule.objects.get().category == "electronics"
    serving.runtime.checked_at = -1e9  # next request looks at the catalog version now
    body = secret_client.get("/api/v1/recommendations/", {"k": 12, "max_per_category": 12}).json()
    assert body["items"] and all(item["category"] != "electronics" for item in body["items"])
