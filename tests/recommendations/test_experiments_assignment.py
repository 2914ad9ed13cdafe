"""Experiments: bucket hashing, minimal reallocation, strategy_for (layers, targeting, consent,
overrides after a merge), and the served answer naming experiment and variant."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from recommendations.experiments import assignment, services
from recommendations.experiments.models import Experiment
from recommendations.experiments.strategy import DEFAULT, strategy_for

from .conftest import grant


def variants(a=50, b=50, *, personalised_b=True):
    return [
        {"key": "control", "weight": a, "is_control": True, "personalised": False},
        {"key": "personalised", "weight": b, "personalised": personalised_b},
    ]


def start(key="exp", **fields):
    fields.setdefault("placements", ["home"])
    experiment = services.experiment_create(key=key, variants=fields.pop("variants", variants()), **fields)
    return services.experiment_start(experiment=experiment)


def test_bucket_is_deterministic_salted_and_uniform():
    units = [str(uuid.UUID(int=i)) for i in range(20_000)]
    a = [assignment.bucket("salt-a", u) for u in units]
    assert a == [assignment.bucket("salt-a", u) for u in units]
    b = [assignment.bucket("salt-b", u) for u in units]
    # another salt: independent (about half of the units are below 5000 under both, not all)
    both = sum(1 for x, y in zip(a, b, strict=True) if x < 5000 and y < 5000)
    assert 4500 < both < 5500
    assert all(0 <= x < 10_000 for x in a)
    assert 9600 < sum(1 for x in a if x < 5000) < 10_400


def test_weight_change_moves_only_the_buckets_it_must():
    first = assignment.reallocate([], {"a": 50, "b": 50})
    assert Counter(assignment.expand(first)) == {"a": 5000, "b": 5000}
    second = assignment.reallocate(first, {"a": 30, "b": 70})
    assert assignment.moved(first, second) == 2000
    third = assignment.reallocate(second, {"a": 30, "b": 40, "c": 30})
    assert Counter(assignment.expand(third)) == {"a": 3000, "b": 4000, "c": 3000}
    assert assignment.moved(second, third) == 3000  # only b's released buckets went to c


@pytest.mark.django_db
def test_strategy_for_assigns_consenting_profiles_by_hash_and_split(shop):
    start()
    people = [str(uuid.uuid4()) for _ in range(2000)]
    seen = Counter(
        strategy_for(profile_id=p, placement="home", device="", segments=[], personalisation_consent=True).variant
        for p in people
    )
    assert set(seen) == {"control", "personalised"}
    assert 900 < seen["control"] < 1100
    s = strategy_for(profile_id=people[0], placement="home", device="", segments=[], personalisation_consent=True)
    assert s.experiment == "exp"
    assert s.personalised is (s.variant == "personalised")
    # the same profile gets the same variant every time
    again = strategy_for(profile_id=people[0], placement="home", device="", segments=[], personalisation_consent=True)
    assert again == s


@pytest.mark.django_db
def test_no_consent_no_profile_other_placement_or_segment_get_the_default(shop):
    start(target_segments=["vip"])
    pid = str(uuid.uuid4())
    assert (
        strategy_for(profile_id=pid, placement="home", device="", segments=["vip"], personalisation_consent=False)
        == DEFAULT
    )
    assert (
        strategy_for(profile_id=None, placement="home", device="", segments=["vip"], personalisation_consent=True)
        == DEFAULT
    )
    assert (
        strategy_for(profile_id=pid, placement="cart", device="", segments=["vip"], personalisation_consent=True)
        == DEFAULT
    )
    assert (
        strategy_for(profile_id=pid, placement="home", device="", segments=["other"], personalisation_consent=True)
        == DEFAULT
    )
    assert (
        strategy_for(
            profile_id=pid, placement="home", device="", segments=["vip"], personalisation_consent=True
        ).experiment
        == "exp"
    )


@pytest.mark.django_db
def test_layers_keep_a_shopper_in_one_experiment_per_layer(shop):
    start("first", layer="home-tests", layer_start=0, layer_end=5000)
    start("second", layer="home-tests", layer_start=5000, layer_end=10_000)
    people = [str(uuid.uuid4()) for _ in range(1000)]
    config = assignment.live_config.get()
    for p in people:
        b = assignment.bucket(assignment.layer_salt("home-tests"), p)
        s = assignment.choose(
            profile_id=p, placement="home", device="", segments=[], personalisation_consent=True, config=config
        )
        assert s.experiment == ("first" if b < 5000 else "second")


@pytest.mark.django_db
def test_shipped_variant_is_served_to_everybody_without_an_experiment(shop):
    experiment = start()
    services.experiment_ship(experiment=experiment, variant="control")
    s = strategy_for(
        profile_id=str(uuid.uuid4()), placement="home", device="", segments=[], personalisation_consent=True
    )
    assert (s.experiment, s.personalised) == (None, False)


@pytest.mark.django_db
def test_recommendations_answer_names_experiment_and_variant_and_logs_it(shop, secret_client):
    from recommendations.models import RecommendationServed

    start()
    for n in range(6):
        grant(shop.person(n))
    seen = set()
    for n in range(6):
        body = secret_client.get("/api/v1/recommendations/", {"profile_id": shop.person(n), "placement": "home"}).json()
        assert body["experiment"] == "exp"
        assert body["personalised"] is (body["variant"] == "personalised")
        row = RecommendationServed.objects.get(pk=body["recommendation_id"])
        assert (row.experiment, row.variant, row.propensity) == ("exp", body["variant"], 1.0)
        seen.add(body["variant"])
    # without consent: no experiment named, nothing personalised
    grant(shop.person(7), granted=False)
    body = secret_client.get("/api/v1/recommendations/", {"profile_id": shop.person(7), "placement": "home"}).json()
    assert (body["experiment"], body["variant"], body["personalised"]) == (None, None, False)


@pytest.mark.django_db
def test_merge_keeps_the_earlier_exposure_variant(shop):
    from datetime import timedelta

    from django.utils import timezone

    from profiles.models import Profile
    from recommendations.experiments.models import Exposure

    experiment = start()
    winner, loser = Profile.objects.get(pk=shop.person(8)), Profile.objects.get(pk=shop.person(9))
    control, treated = experiment.variants.get(key="control"), experiment.variants.get(key="personalised")
    now = timezone.now()
    Exposure.objects.create(experiment=experiment, variant=treated, profile=winner, first_exposed_at=now)
    Exposure.objects.create(
        experiment=experiment, variant=control, profile=loser, first_exposed_at=now - timedelta(hours=1)
    )
    services.experiments_on_profiles_merged(winner_id=str(winner.pk), loser_id=str(loser.pk))
    s = strategy_for(profile_id=str(winner.pk), placement="home", device="", segments=[], personalisation_consent=True)
    assert s.variant == "control"
    assert Exposure.objects.filter(profile=winner).count() == 2  # saw both: reported and excluded
    assert not Exposure.objects.filter(profile=loser).exists()
    assert Experiment.objects.get(pk=experiment.pk).overrides.get().variant == "control"
