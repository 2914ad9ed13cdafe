"""Celery tasks of the profiles app: thin wrappers over services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from profiles import services


@shared_task(name="profiles.tasks.pending_process", acks_late=True)
def pending_process() -> int:
    """Follow-up work after ingestion: computed traits, then the activity hook (segments…)."""
    return services.pending_process()


@shared_task(name="profiles.tasks.intake_stitch", acks_late=True)
def intake_stitch() -> int:
    """Stitch the intake log until no partition with calls is free (queue ``intake``), then keep
    watching it while calls keep coming (``CDP_INTAKE_LINGER_SECONDS``). Safe to run twice and in
    parallel: each batch holds its partitions' locks; an idle run costs two queries."""
    from django.conf import settings

    from profiles.tracking.worker import intake_drain

    return intake_drain(linger=settings.CDP_INTAKE_LINGER_SECONDS)


@shared_task(name="profiles.tasks.heavy_traits_recompute")
def heavy_traits_recompute() -> int:
    """Nightly: recompute every profile's computed traits (time windows move every day)."""
    return services.traits_recompute_all()


@shared_task(name="profiles.tasks.ml_identity_match", acks_late=True)
def ml_identity_match(run_id: int) -> int:
    """Execute one fuzzy-matching run (queued from admin or the schedule). Idempotent."""
    return services.matching_run_execute(run_id=run_id).pk


@shared_task(name="profiles.tasks.ml_identity_match_nightly")
def ml_identity_match_nightly() -> int:
    """Nightly: an incremental run (new and changed profiles against everyone), executed here."""
    run = services.matching_run_start(mode="incremental", requested_by="schedule")
    services.run_queued_matching()
    return run.pk


@shared_task(name="profiles.tasks.schema_drain")
def schema_drain() -> int:
    """Fold the pending summaries of stored batches into the schema registry (each summary is taken
    from Redis once, so a re-run finds nothing left; the nightly rebuild corrects any loss)."""
    from .schema import schema_drain as drain

    return drain()


@shared_task(name="profiles.tasks.heavy_schema_rebuild")
def heavy_schema_rebuild() -> int:
    from .schema import schema_rebuild

    return schema_rebuild()
