"""Admin of experiments and bandits: create with validation and split preview, edit, results page
(table, chart, SRM banner), start/stop/ship, bandit page."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from recommendations.experiments import selectors, services
from recommendations.experiments.models import Experiment, ExperimentStatus
from recommendations.models import RecommendationServed

from .conftest import grant


def form_data(**over):
    data = {
        "key": "home-test",
        "name": "",
        "hypothesis": "",
        "placements": "home",
        "layer": "default",
        "layer_start": "0",
        "layer_end": "10000",
        "target_segments": "",
        "primary_metric": "conversion",
        "attribution_hours": "168",
        "cuped_days": "14",
        "alpha": "0.05",
        "sequential": "on",
        "sequential_tuning": "5000",
        "variants-TOTAL_FORMS": "2",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "2",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-key": "popular",
        "variants-0-weight": "50",
        "variants-0-is_control": "on",
        "variants-0-rerank": "on",
        "variants-1-key": "personalised",
        "variants-1-weight": "50",
        "variants-1-personalised": "on",
        "variants-1-rerank": "on",
    }
    data.update(over)
    return data


@pytest.mark.django_db
def test_create_with_preview_and_validation(admin_client):
    url = reverse("admin:recommendations_experiment_add")
    assert admin_client.get(url).status_code == 200
    preview = admin_client.post(
        url, form_data(**{"variants-0-weight": "30", "variants-1-weight": "70", "_preview": "1"})
    )
    assert b"Traffic split preview" in preview.content and b"<svg" in preview.content
    assert not Experiment.objects.exists()
    bad = admin_client.post(url, form_data(**{"variants-1-weight": "40", "placements": "moon"}))
    page = bad.content.decode()
    assert "must sum to 100" in page and "Unknown placement &#x27;moon&#x27;" in page
    ok = admin_client.post(url, form_data())
    assert ok.status_code == 302
    experiment = Experiment.objects.get()
    assert experiment.history[0]["by"] == "admin:admin"
    change = reverse("admin:recommendations_experiment_change", args=[experiment.pk])
    edited = admin_client.post(
        change, form_data(**{"variants-0-weight": "40", "variants-1-weight": "60", "variants-INITIAL_FORMS": "2"})
    )
    assert edited.status_code == 302
    assert experiment.variants.get(key="popular").weight == 40


@pytest.mark.django_db
def test_results_page_actions_chart_and_srm_banner(shop, admin_client):
    experiment = services.experiment_create(
        key="exp",
        placements=["home"],
        variants=[{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
    )
    results = reverse("admin:recommendations_experiment_results", args=[experiment.pk])
    act = lambda verb: reverse("admin:recommendations_experiment_act", args=[experiment.pk, verb])  # noqa: E731
    assert admin_client.post(act("start")).status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING
    at = timezone.now()
    for n in range(10):  # a skewed split: 9 to a, 1 to b
        grant(shop.person(n))
        RecommendationServed.objects.create(
            profile_id=shop.person(n), experiment="exp", variant="a" if n < 9 else "b", items=[], created_at=at
        )
    selectors.experiment_results(experiment=experiment, snapshot=True)
    admin_client.post(act("snapshot"))
    page = admin_client.get(results).content.decode()
    assert 'id="results-table"' in page and "<svg" in page
    assert "Sample-ratio mismatch" not in page  # 9:1 of 10 units is not yet significant at 0.001
    assert admin_client.post(act("stop")).status_code == 302
    assert admin_client.post(act("ship"), {"variant": "b"}).status_code == 302
    experiment.refresh_from_db()
    assert (experiment.status, experiment.shipped_variant) == ("shipped", "b")


@pytest.mark.django_db
def test_srm_banner_shows_on_a_mismatch(shop, admin_client):
    experiment = services.experiment_start(
        experiment=services.experiment_create(
            key="exp",
            placements=["home"],
            variants=[{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        )
    )
    from profiles.models import Profile

    now = timezone.now()
    for n in range(45):  # 40 exposed to a, 5 to b under a 50/50 split: chi-squared p < 0.001
        person = str(Profile.objects.create(first_seen_at=now, last_seen_at=now).pk)
        grant(person)
        RecommendationServed.objects.create(
            profile_id=person, experiment="exp", variant="a" if n < 40 else "b", items=[], created_at=now
        )
    page = admin_client.get(reverse("admin:recommendations_experiment_results", args=[experiment.pk])).content.decode()
    assert 'id="srm-banner"' in page


@pytest.mark.django_db
def test_bandit_page(shop, admin_client):
    from recommendations.experiments.bandits import bandit_update

    policy = services.bandit_create(
        key="b", placements=["home"], arms=[{"key": "x"}, {"key": "y", "personalised": False}], burn_in=1
    )
    person = shop.person(0)
    for arm in ("x", "y", "x"):
        RecommendationServed.objects.create(
            profile_id=person,
            policy="b",
            arm_context="-|home|-",
            variant=arm,
            propensity=0.5,
            items=[],
            created_at=timezone.now(),
        )
    bandit_update(policy_id=policy.pk, seed=0)
    bandit_update(policy_id=policy.pk, seed=1)
    page = admin_client.get(reverse("admin:recommendations_banditpolicy_shares", args=[policy.pk])).content.decode()
    assert 'id="shares-chart"' in page and "<polyline" in page
    assert 'id="ope"' in page and "doubly robust" in page
    assert admin_client.get(reverse("admin:recommendations_banditpolicy_changelist")).status_code == 200


@pytest.mark.django_db
def test_profile_page_lists_the_persons_experiments(shop, admin_client):
    experiment = services.experiment_start(
        experiment=services.experiment_create(
            key="exp",
            placements=["home"],
            variants=[{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        )
    )
    person = shop.person(0)
    grant(person)
    RecommendationServed.objects.create(
        profile_id=person, experiment="exp", variant="b", items=[], created_at=timezone.now()
    )
    services.exposures_refresh(experiment=experiment)
    page = admin_client.get(reverse("admin:profiles_profile_change", args=[person])).content.decode()
    assert reverse("admin:recommendations_experiment_results", args=[experiment.pk]) in page
    assert "first exposure" in page
