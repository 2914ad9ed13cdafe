"""Celery tasks of the segments app: thin wrappers over services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

# --- rule segments (owner SEGMENTS) ---


@shared_task(name="segments.tasks.segment_refresh", acks_late=True)
def segment_refresh(segment_id: int) -> list[int] | None:
    """Full refresh of one rule segment (after it is saved). Idempotent."""
    from segments.models import Segment
    from segments.services import segment_refresh as refresh

    segment = Segment.objects.filter(pk=segment_id).first()
    return list(refresh(segment=segment)) if segment else None


# A real-time refresh that fails (a deadlock against ingestion, a lost connection, a lock held by a
# long full refresh) is retried with exponential backoff (capped, jittered) until it succeeds: the
# people it was for would otherwise stay wrongly in or out until their next event or the nightly run.
# Safe to run again: it re-evaluates and applies only differences.
@shared_task(
    name="segments.tasks.segments_profiles_refresh",
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=1,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=None,
)
def segments_profiles_refresh(
    profile_ids: list[str], event_names: list[str] | None = None, every_segment: bool = False
) -> list[int]:
    """Real time: re-evaluate these profiles in the segments their activity could change
    (``every_segment`` after a merge or unmerge); retried until it succeeds."""
    from segments.services import segments_profiles_refresh as refresh

    return list(refresh(profile_ids=profile_ids, event_names=event_names, every_segment=every_segment))


@shared_task(name="segments.tasks.heavy_segments_refresh")
def heavy_segments_refresh(time_based_only: bool = False) -> int:
    """Scheduled full refresh (time windows move, consent changes, nightly traits)."""
    from segments.services import segments_refresh_all

    return segments_refresh_all(time_based_only=time_based_only)


# --- clustering (segments/clustering/, owner CLUSTERING) ---


@shared_task(name="segments.tasks.ml_clustering_run", acks_late=True)
def ml_clustering_run(run_id: int | None = None) -> int | None:
    """Execute a clustering run (``ml`` queue). Without an id (the weekly schedule): start a run and
    execute it here. Idempotent: a run that is no longer queued is left as it is."""
    from segments.clustering.services import clustering_run_execute, clustering_run_start, run_queued_clustering

    if run_id is None:
        run = clustering_run_start(requested_by="schedule", queue=False)
        run_queued_clustering()
        return run.pk
    return clustering_run_execute(run_id=run_id).pk


@shared_task(name="segments.tasks.ml_cluster_segments_assign")
def ml_cluster_segments_assign() -> int:
    """Nightly: accepted cluster segments take the live profiles nearest their stored centre."""
    from segments.clustering.services import cluster_segments_assign

    return cluster_segments_assign()
