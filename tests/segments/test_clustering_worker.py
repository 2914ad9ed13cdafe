"""A clustering run started as admin starts it goes through a real Celery worker (ml queue)."""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from django.utils import timezone

from cdp.schedule import beat_schedule
from segments.clustering.services import clustering_run_start
from segments.models import ClusteringRun, Segment
from tests.segments.clustering_shop import shop

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_run_queued_on_commit_finishes_in_the_worker_with_progress_and_proposals(celery_worker):
    shop(now=timezone.now(), per_group=15)
    with transaction.atomic():
        run = clustering_run_start(
            requested_by="tester", params={"k_min": 3, "k_max": 5, "bootstrap": 2, "algorithms": ["kmeans"]}
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in ("done", "failed"):
            break
        time.sleep(0.3)
    assert run.status == "done", run.error
    assert run.progress == 1.0 and run.started_at and run.finished_at
    assert run.chosen["algorithm"] == "kmeans" and 3 <= run.chosen["k"] <= 5
    assert Segment.objects.filter(clustering_run=run, status="proposed").count() == run.chosen["k"]
    assert ClusteringRun.objects.count() == 1


def test_the_weekly_entry_runs_the_clustering_task_on_the_ml_queue():
    from cdp.celery import app

    entry = beat_schedule()["segments-clustering-weekly"]
    assert entry["task"] == "segments.tasks.ml_clustering_run"
    assert entry["schedule"].day_of_week == {0}  # Sunday
    assert app.amqp.router.route({}, entry["task"])["queue"].name == "ml"
    daily = beat_schedule()["segments-cluster-segments-daily"]
    assert daily["task"] == "segments.tasks.ml_cluster_segments_assign" and daily["schedule"].hour == {3}
    assert app.amqp.router.route({}, daily["task"])["queue"].name == "ml"
