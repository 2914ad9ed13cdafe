"""Celery tasks of the profiles app: thin wrappers over services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from profiles import services


@shared_task(name="profiles.tasks.pending_process", acks_late=True)
def pending_process() -> int:
    """Follow-up work after ingestion: computed traits, then the activity hook (segments…)."""
    return services.pending_process()


@shared_task(name="profiles.tasks.heavy_traits_recompute")
def heavy_traits_recompute() -> int:
    """Nightly: recompute every profile's computed traits (time windows move every day)."""
    return services.traits_recompute_all()
