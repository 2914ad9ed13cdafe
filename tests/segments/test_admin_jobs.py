"""Jobs and models in plain words: progress that follows itself, what each cluster's customers are
like, rename on accept, which new cluster continues which accepted one; model versions' state,
why each was or was not promoted, its baseline and an interval on nDCG."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from recommendations.admin import ndcg_half_interval
from recommendations.models import ModelVersion
from segments.admin_clustering import cluster_continuations
from segments.models import ClusteringRun, Segment
from segments.services import segment_membership_set
from tests.segments.factories import profile

pytestmark = pytest.mark.django_db


def _cluster(run, label, name, people, status="proposed"):
    seg = Segment.objects.create(
        slug=f"c{run.pk}-{label}",
        name=name,
        kind="cluster",
        status=status,
        clustering_run=run,
        cluster_label=label,
        cluster_profile={
            "share": 0.5,
            "median": {"recency_days": 12.0, "frequency": 3.0, "monetary": 420.0},
            "categories": {"outdoor": 0.61, "books": 0.2, "toys": 0.0},
            "devices": {"mobile": 0.8, "desktop": 0.2},
        },
    )
    segment_membership_set(segment=seg, profile_ids=[str(p.pk) for p in people])
    seg.refresh_from_db()
    return seg


def test_cluster_results_table_and_which_new_cluster_continues_an_accepted_one(admin_client):
    people = [profile() for _ in range(6)]
    old_run = ClusteringRun.objects.create(status="done")
    _cluster(old_run, 0, "Outdoor fans", people[:4], status="active")
    run = ClusteringRun.objects.create(status="done")
    continuing = _cluster(run, 0, "Cluster 2.1", people[:3])
    fresh = _cluster(run, 1, "Cluster 2.2", people[4:])

    assert cluster_continuations(segments=[continuing, fresh]) == {continuing.pk: ("Outdoor fans", 0.75)}
    page = admin_client.get(reverse("admin:segments_clusteringrun_change", args=[run.pk])).content.decode()
    table = page.split('class="cdp-table cluster-results"')[1].split("</table>")[0]
    for text in (
        "median days since last order",
        "outdoor 61%",
        "mobile 80%",
        "420",
        "Outdoor fans (75% same people)",
        ">new<",
    ):
        assert text in table
    assert 'name="rename_' in page

    response = admin_client.post(
        reverse("admin:segments_clusteringrun_decide", args=[continuing.pk, "accept"]),
        {f"rename_{continuing.pk}": "Outdoor fans (spring)"},
    )
    assert response.status_code == 302
    continuing.refresh_from_db()
    assert (continuing.status, continuing.name) == ("active", "Outdoor fans (spring)")


def test_running_work_refreshes_itself_and_finished_work_says_finished(admin_client):
    ClusteringRun.objects.create(status="running", progress=0.4, progress_message="fitting")
    ClusteringRun.objects.create(status="done", progress=1.0)
    page = admin_client.get(reverse("admin:segments_clusteringrun_changelist")).content.decode()
    assert page.count("data-cdp-running") == 1 and "finished" in page
    assert "cdp/admin.js" in page  # the script that follows running work


def test_model_versions_say_what_they_are_why_and_with_an_interval(admin_client):
    now = timezone.now()
    metrics = {"ndcg@10": 0.2, "users_evaluated": 400, "map@10": 0.1}
    retired = ModelVersion.objects.create(
        status="retired",
        progress=1.0,
        progress_message="active",
        metrics=metrics,
        promoted_at=now,
        retired_at=now,
        decision="promoted: nDCG@10 0.2000 vs 0.1800 of the active model",
    )
    ModelVersion.objects.create(
        status="candidate", metrics=metrics, decision="not promoted: worse than the active model"
    )
    page = admin_client.get(reverse("admin:recommendations_modelversion_changelist")).content.decode()
    assert "100% active" not in page and "retired" in page
    assert "not promoted: worse than the active model" in page
    assert "0.2000 ± 0.039" in page  # 1.96 * sqrt(0.2 * 0.8 / 400)
    detail = admin_client.get(reverse("admin:recommendations_modelversion_change", args=[retired.pk])).content.decode()
    assert "baseline: the active model's recipe" in detail and "95 % interval over 400 users" in detail
    assert ndcg_half_interval({"ndcg@10": 0.2, "users_evaluated": 100, "ndcg@10_std": 0.1}) == pytest.approx(0.0196)
