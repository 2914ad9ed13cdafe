"""Celery tasks of the segments app: thin wrappers over services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

# --- clustering (segments/clustering/, owner CLUSTERING) ---


@shared_task(name="segments.tasks.ml_clustering_run", acks_late=True)
def ml_clustering_run(run_id: int | None = None) -> int | None:
    """Execute a clustering run (``ml`` queue). Without an id (the weekly schedule): start a run and
    execute it here. Idempotent: a run that is no longer queued is left as it is."""
    from segments.clustering.services import clustering_run_execute, clustering_run_start, run_queued_clustering

    if run_id is None:
        run = clustering_run_start(requested_by="schedule")
        run_queued_clustering()
        return run.pk
    return clustering_run_execute(run_id=run_id).pk
