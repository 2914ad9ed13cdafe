"""The clustering API: start a run, read its report and proposals, accept or dismiss a proposal.

The viewsets are mounted here exactly as segments/api/routes.py registers them, under /api/v1/.
"""

from __future__ import annotations

import pytest
from django.urls import include, path
from django.utils import timezone
from rest_framework.routers import DefaultRouter

from segments.clustering.api import ClusteringRunViewSet, ClusterSegmentViewSet
from segments.clustering.services import clustering_run_execute
from segments.models import ClusteringRun, Segment
from tests.segments.clustering_shop import shop

router = DefaultRouter()
router.register("clustering-runs", ClusteringRunViewSet, basename="clustering-run")
router.register("cluster-segments", ClusterSegmentViewSet, basename="cluster-segment")
urlpatterns = [path("api/v1/", include(router.urls))]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def test_a_run_started_through_the_api_is_reported_and_its_proposals_decided(
    secret_client, django_capture_on_commit_callbacks
):
    now = timezone.now()
    shop(now=now, per_group=20)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = secret_client.post(
            "/api/v1/clustering-runs/", {"k_min": 3, "k_max": 6, "bootstrap": 3}, format="json"
        )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response.json()["requested_by"] == "api:tests"
    assert len(queued) == 1
    run_id = response.json()["id"]
    clustering_run_execute(run_id=run_id, now=now)

    listed = secret_client.get("/api/v1/clustering-runs/").json()
    assert [r["id"] for r in listed] == [run_id] and listed[0]["status"] == "done"
    detail = secret_client.get(f"/api/v1/clustering-runs/{run_id}/").json()
    assert detail["progress"] == 1.0 and detail["chosen"]["k"] == len(detail["segments"])
    assert {a["algorithm"] for a in detail["report"]["algorithms"]} == {"kmeans", "gmm", "agglomerative"}
    first, second = detail["segments"][:2]
    assert first["status"] == "proposed" and first["cluster_profile"]["description"]

    accepted = secret_client.post(f"/api/v1/cluster-segments/{first['slug']}/accept/")
    dismissed = secret_client.post(f"/api/v1/cluster-segments/{second['slug']}/dismiss/")
    again = secret_client.post(f"/api/v1/cluster-segments/{first['slug']}/dismiss/")

    assert accepted.status_code == 200 and accepted.json()["status"] == "active"
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    assert again.status_code == 400 and "already decided" in again.json()["error"]["fields"]["status"][0]
    assert Segment.objects.get(slug=first["slug"]).cluster_profile["decision"]["by"] == "api:tests"


def test_bad_parameters_unknown_segments_and_missing_keys_get_clear_errors(secret_client, api_client):
    bad = secret_client.post("/api/v1/clustering-runs/", {"k_min": 9, "k_max": 5}, format="json")
    assert bad.status_code == 400 and "k_min" in bad.json()["error"]["fields"]["params"][0]
    unknown = secret_client.post("/api/v1/clustering-runs/", {"algorithms": ["dbscan"]}, format="json")
    assert unknown.status_code == 400 and "algorithms.0" in unknown.json()["error"]["fields"]
    assert secret_client.post("/api/v1/cluster-segments/nope/accept/").status_code == 404
    assert secret_client.get("/api/v1/clustering-runs/999/").status_code == 404
    assert api_client.get("/api/v1/clustering-runs/").status_code in (401, 403)
    assert not ClusteringRun.objects.exists()
