"""Bandits through the real serving path: propensities logged, shares updated from clicks (on a real
Celery worker too), the floor and burn-in honoured, off-policy evaluation from the logs."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from recommendations.experiments import bandits
from recommendations.experiments.models import BanditPolicy, BanditSnapshot
from recommendations.models import RecommendationServed

from .conftest import add_event, grant

ARMS = [{"key": "personalised", "personalised": True}, {"key": "popular", "personalised": False}]


def test_thompson_shares_burn_in_floor_and_preference():
    rng = np.random.default_rng(0)
    burn = bandits.thompson_shares(np.array([50.0, 500.0]), np.array([5.0, 50.0]), burn_in=100, floor=0.01, rng=rng)
    assert list(burn) == [0.5, 0.5]
    shares = bandits.thompson_shares(
        np.array([1000.0, 1000.0]), np.array([200.0, 100.0]), burn_in=100, floor=0.05, rng=rng
    )
    assert shares[0] == pytest.approx(0.95)
    assert shares[1] == pytest.approx(0.05)  # the floor
    assert shares.sum() == pytest.approx(1.0)


def _serve_and_click(shop, secret_client, *, rounds: int, click_arm: str) -> list[dict]:
    answers = []
    for n in range(rounds):
        person = shop.person(n % 10)
        body = secret_client.get(
            "/api/v1/recommendations/", {"profile_id": person, "placement": "home", "device": "mobile"}
        ).json()
        answers.append(body)
        if body["variant"] == click_arm:
            add_event(
                shop.source,
                person,
                "Product Clicked",
                {"recommendation_id": body["recommendation_id"]},
                timezone.now() + timedelta(seconds=1),
            )
    return answers


@pytest.mark.django_db
def test_bandit_serves_arms_logs_propensities_and_learns(shop, secret_client):
    for n in range(10):
        grant(shop.person(n))
    created = secret_client.post(
        "/api/v1/bandits/", {"key": "home-bandit", "placements": ["home"], "arms": ARMS, "burn_in": 10}, format="json"
    )
    assert created.status_code == 201, created.content
    answers = _serve_and_click(shop, secret_client, rounds=60, click_arm="popular")
    assert {a["variant"] for a in answers} == {"personalised", "popular"}
    rows = RecommendationServed.objects.filter(policy="home-bandit")
    assert rows.count() == 60
    assert set(rows.values_list("propensity", flat=True)) == {0.5}  # uniform before the first update
    assert set(rows.values_list("arm_context", flat=True)) == {"-|home|mobile"}
    assert all(a["personalised"] is (a["variant"] == "personalised") for a in answers)

    policy = BanditPolicy.objects.get(key="home-bandit")
    out = bandits.bandit_update(policy_id=policy.pk, seed=1)
    policy.refresh_from_db()
    shares = policy.state["contexts"]["-|home|mobile"]["shares"]
    assert shares["popular"] > 0.9 and shares["personalised"] >= 0.01
    assert out["shares"]["popular"] > 0.9
    assert BanditSnapshot.objects.filter(policy=policy).count() == 1

    later = _serve_and_click(shop, secret_client, rounds=40, click_arm="popular")
    assert sum(a["variant"] == "popular" for a in later) >= 30
    logged = RecommendationServed.objects.filter(policy="home-bandit", variant="popular").order_by("-created_at")[0]
    assert logged.propensity == pytest.approx(shares["popular"], abs=1e-6)

    evaluation = secret_client.get("/api/v1/bandits/home-bandit/evaluation/").json()
    assert evaluation["n"] == 100
    best = evaluation["candidates"]["always popular"]["dr"]
    assert best["value"] == pytest.approx(1.0)
    assert evaluation["candidates"]["always personalised"]["dr"]["value"] == pytest.approx(0.0)


@pytest.mark.django_db
def test_bandit_input_errors_are_400(secret_client):
    bad = secret_client.post("/api/v1/bandits/", {"key": "b", "placements": ["moon"], "arms": ARMS[:1]}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) >= {"placements", "arms"}


@pytest.mark.django_db
def test_no_consent_no_bandit(shop, secret_client):
    secret_client.post("/api/v1/bandits/", {"key": "b", "placements": ["home"], "arms": ARMS}, format="json")
    grant(shop.person(0), granted=False)
    body = secret_client.get("/api/v1/recommendations/", {"profile_id": shop.person(0), "placement": "home"}).json()
    assert body["variant"] is None


@pytest.mark.django_db(transaction=True)
def test_beat_task_updates_shares_on_a_real_celery_worker(celery_worker):
    from consent.services import purposes_ensure
    from profiles.models import Profile
    from profiles.services import source_create
    from recommendations import tasks
    from recommendations.experiments.services import bandit_create

    purposes_ensure()
    source, _ = source_create(name="shop")
    policy = bandit_create(key="b", placements=["home"], arms=ARMS, burn_in=5)
    person = Profile.objects.create(first_seen_at=timezone.now(), last_seen_at=timezone.now())
    now = timezone.now()
    for n in range(20):
        arm = ARMS[n % 2]["key"]
        row = RecommendationServed.objects.create(
            profile=person,
            placement="home",
            policy="b",
            arm_context="-|home|-",
            variant=arm,
            propensity=0.5,
            items=[],
            created_at=now,
        )
        if arm == "popular":
            add_event(
                source,
                str(person.pk),
                "Product Clicked",
                {"recommendation_id": str(row.id)},
                now + timedelta(seconds=1),
            )
    tasks.experiments_bandits_update.delay(policy.pk)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not BanditSnapshot.objects.filter(policy=policy).exists():
        time.sleep(0.2)
    policy.refresh_from_db()
    assert policy.state["contexts"]["-|home|-"]["shares"]["popular"] > 0.9
