"""make demo's experiment and bandit on a small demo store: traffic through serving, clicks and
orders through ingestion, looks and bandit updates recorded, visible in admin."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from cdp.demo.store import demo_store_generate
from profiles.models import Identifier
from recommendations.experiments.demo import BANDIT_KEY, EXPERIMENT_KEY
from recommendations.experiments.models import BanditPolicy, Experiment
from recommendations.models import RecommendationServed

from .conftest import grant

pytestmark = pytest.mark.django_db


def test_demo_experiment_and_bandit(django_capture_on_commit_callbacks, settings, admin_client):
    settings.RECS_TRAIN_PARAMS = {}
    with django_capture_on_commit_callbacks(execute=True):
        demo_store_generate(customers=40, days=30, seed=5, progress=False)
    people = set(Identifier.objects.filter(kind="user_id").values_list("profile_id", flat=True))
    for pid in people:
        grant(str(pid))
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo_recommendations", "--experiment-days", "2", "--experiment-visits", "1", stdout=out)
    text = out.getvalue()
    assert "demo experiments: day 2/2" in text and "/admin/recommendations/experiment/" in text
    run = {"shoppers": len(people)}
    experiment = Experiment.objects.get(key=EXPERIMENT_KEY)
    assert experiment.status == "running" and experiment.snapshots.count() == 2
    results = experiment.snapshots.order_by("computed_at").last().results
    assert sum(results["units"].values()) + sum(results["excluded"].values()) == run["shoppers"]
    assert sum(results["excluded"].values()) == 0
    assert (
        RecommendationServed.objects.filter(experiment=EXPERIMENT_KEY, created_at__gte=experiment.started_at).count()
        == 2 * run["shoppers"]
    )
    policy = BanditPolicy.objects.get(key=BANDIT_KEY)
    assert policy.snapshots.count() == 2
    assert RecommendationServed.objects.filter(policy=BANDIT_KEY).count() == 2 * run["shoppers"]
    page = admin_client.get(reverse("admin:recommendations_experiment_results", args=[experiment.pk]))
    assert page.status_code == 200 and b'id="lift-chart"' in page.content and b'id="results-table"' in page.content
    assert admin_client.get(reverse("admin:recommendations_banditpolicy_shares", args=[policy.pk])).status_code == 200
