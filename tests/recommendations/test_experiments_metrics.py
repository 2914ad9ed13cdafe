"""Exposures from the served log and metrics by set-based SQL: only events after a unit's first
exposure and inside the attribution window count; a unit that saw two variants is excluded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recommendations.experiments import selectors, services
from recommendations.experiments.models import Experiment, Exposure
from recommendations.models import RecommendationServed

from .conftest import add_event, grant


def _started_days_ago(experiment, days: int):
    """As if the experiment had been started ``days`` ago (answers served before a start are not its own)."""
    Experiment.objects.filter(pk=experiment.pk).update(started_at=timezone.now() - timedelta(days=days))
    experiment.refresh_from_db()
    return experiment


def _serve(profile_id, variant, at, experiment="exp"):
    return RecommendationServed.objects.create(
        profile_id=profile_id, placement="home", experiment=experiment, variant=variant, items=["ELE-1"], created_at=at
    )


@pytest.mark.django_db
def test_metrics_count_only_after_first_exposure_and_exclude_multi_variant_units(shop, secret_client):
    experiment = services.experiment_create(
        key="exp",
        placements=["home"],
        primary_metric="revenue",
        guardrail_metrics=["ctr", "conversion", "aov"],
        attribution_hours=48,
        variants=[
            {"key": "control", "weight": 50, "is_control": True, "personalised": False},
            {"key": "treat", "weight": 50},
        ],
    )
    experiment = services.experiment_start(experiment=experiment)
    now = timezone.now()
    experiment = _started_days_ago(experiment, 5)
    p = [shop.person(n) for n in range(10)]
    for person in p:
        grant(person)
    t0 = now - timedelta(hours=30)
    # person 0 (control): 2 answers, clicks one, one order of 30 after exposure, one order before (ignored)
    s1 = _serve(p[0], "control", t0)
    _serve(p[0], "control", t0 + timedelta(hours=1))
    add_event(shop.source, p[0], "Product Clicked", {"recommendation_id": str(s1.id)}, t0 + timedelta(minutes=1))
    add_event(shop.source, p[0], "Order Completed", {"revenue": 30}, t0 + timedelta(hours=2))
    add_event(shop.source, p[0], "Order Completed", {"revenue": 99}, t0 - timedelta(hours=2))
    # person 1 (control): 1 answer, nothing else; an order after the window (ignored)
    _serve(p[1], "control", now - timedelta(hours=60))
    add_event(shop.source, p[1], "Order Completed", {"revenue": 50}, now - timedelta(hours=1))
    # person 2 (treat): two orders (10 + 20) and a click on an answer of another placement (not counted)
    _serve(p[2], "treat", t0)
    other = RecommendationServed.objects.create(profile_id=p[2], placement="cart", items=[], created_at=t0)
    add_event(shop.source, p[2], "Product Clicked", {"recommendation_id": str(other.id)}, t0 + timedelta(minutes=5))
    add_event(shop.source, p[2], "Order Completed", {"revenue": 10}, t0 + timedelta(hours=3))
    add_event(shop.source, p[2], "Order Completed", {"total": 20}, t0 + timedelta(hours=4))
    # person 3 saw both variants: reported, excluded
    _serve(p[3], "control", t0)
    _serve(p[3], "treat", t0 + timedelta(hours=1))
    add_event(shop.source, p[3], "Order Completed", {"revenue": 1000}, t0 + timedelta(hours=2))

    results = selectors.experiment_results(experiment=experiment)

    assert Exposure.objects.filter(experiment=experiment).count() == 5
    assert results["units"] == {"control": 2, "treat": 1}
    assert results["excluded"] == {"control": 1, "treat": 0}
    rows = {(r["metric"], r["variant"]): r for r in results["metrics"]}
    assert rows[("revenue", "control")]["value"] == pytest.approx(15.0)  # (30 + 0) / 2
    assert rows[("revenue", "treat")]["value"] == pytest.approx(30.0)
    assert rows[("ctr", "control")]["value"] == pytest.approx(1 / 3)  # 1 click / 3 answers
    assert rows[("ctr", "treat")]["value"] == pytest.approx(0.0)
    assert rows[("conversion", "control")]["value"] == pytest.approx(0.5)
    assert rows[("aov", "treat")]["value"] == pytest.approx(15.0)
    assert results["srm"]["observed"] == [3, 1]
    assert "p_value_holm" in rows[("revenue", "treat")]

    # answers served before the start (a reused key) are not exposures of this experiment
    _serve(p[5], "treat", experiment.started_at - timedelta(minutes=1))
    # refreshing again is idempotent, and the API answers the same
    services.exposures_refresh(experiment=experiment)
    assert Exposure.objects.filter(experiment=experiment).count() == 5
    api = secret_client.get("/api/v1/experiments/exp/results/").json()
    assert (api["units"], api["excluded"]) == (results["units"], results["excluded"])
    assert {r["metric"] for r in api["metrics"]} == {"revenue", "ctr", "conversion", "aov"}


@pytest.mark.django_db
def test_units_whose_consent_is_withdrawn_leave_the_analysis(shop):
    experiment = services.experiment_start(
        experiment=services.experiment_create(
            key="exp",
            placements=["home"],
            variants=[{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        )
    )
    experiment = _started_days_ago(experiment, 1)
    at = timezone.now() - timedelta(hours=1)
    for n in range(4):
        grant(shop.person(n))
        _serve(shop.person(n), "a" if n % 2 else "b", at)
    grant(shop.person(0), granted=False)
    results = selectors.experiment_results(experiment=experiment)
    assert results["units"] == {"a": 2, "b": 1}
