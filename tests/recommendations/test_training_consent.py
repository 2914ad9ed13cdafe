"""Training respects consent: people without personalisation consent are left out of the models, and
a withdrawal removes the person from every stored model (the active one republished), through consent's
hook and a real Celery worker, the way erasure removes them."""

from __future__ import annotations

import time

import pytest

from consent.services import consent_record
from recommendations import services
from recommendations.engine.bundle import ModelBundle
from recommendations.models import ModelStatus, ModelVersion
from recommendations.selectors import interactions_extract, model_bundle_load

from .conftest import ORDERS, consent_to_training, grant, make_people, make_products, store_orders


def _active_bundle() -> tuple[ModelVersion, ModelBundle]:
    version = ModelVersion.objects.get(status=ModelStatus.ACTIVE)
    return version, model_bundle_load(version_id=version.pk)


@pytest.mark.django_db
def test_people_without_personalisation_consent_are_not_learnt_from(shop_data, django_capture_on_commit_callbacks):
    # given twelve shoppers with orders: some agreed, one refused, the rest never answered
    agreed, refused = shop_data.people[:6], shop_data.people[6]
    for person in agreed:
        grant(person, True)
    grant(refused, False)

    # when interactions are extracted for training and a refresh trains and publishes a model
    data, _ = interactions_extract()
    with django_capture_on_commit_callbacks(execute=True):
        version = services.model_refresh_execute(
            version_id=services.model_refresh_start(requested_by="tests", queue=False).pk
        )

    # then only the people who agreed are in the data and in the stored model
    assert set(data.users) == set(agreed)
    assert version.status == ModelStatus.ACTIVE, version.error
    _, bundle = _active_bundle()
    assert {str(u) for u in bundle.state.users} <= set(agreed)
    assert not any(bundle.known_user(p) for p in shop_data.people[6:])
    # an offline evaluation of imported data (serves nobody) may still read everyone, explicitly
    assert set(interactions_extract(consent_purpose=None)[0].users) == set(shop_data.people[: len(ORDERS)])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_forgets_the_person_from_the_active_model_through_the_worker(celery_worker):
    from profiles.services import source_create

    # given an active model trained on shoppers who all agreed to personalisation
    source, _ = source_create(name="shop")
    make_products()
    people = make_people(source, 12)
    store_orders(source, people)
    consent_to_training()
    services.model_refresh_execute(version_id=services.model_refresh_start(requested_by="tests", queue=False).pk)
    version, bundle = _active_bundle()
    person = next(p for p in people if bundle.known_user(p))
    revision = version.artifact_revision

    # when the person withdraws personalisation consent (banner, privacy center, API)
    consent_record(profile_id=person, choices={"personalisation": False}, source="api")

    # then the worker removes their rows and factors from the active model and republishes it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _active_bundle()[0].artifact_revision == revision:
        time.sleep(0.2)
    version, bundle = _active_bundle()
    assert version.artifact_revision > revision
    assert not bundle.known_user(person)
    assert sum(bundle.known_user(p) for p in people) >= 1  # the others stay
