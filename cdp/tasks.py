"""Project-level tasks: a ping for checks, a heartbeat that proves beat and workers run."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="cdp.tasks.ping")
def ping(value: str) -> dict:
    return services.ping(value=value)


@shared_task(name="cdp.tasks.heartbeat")
def heartbeat() -> str:
    return services.heartbeat_record()


@shared_task(name="cdp.tasks.jobs_sweep")
def jobs_sweep() -> dict:
    """Requeue (or fail) long runs whose worker died: their lease was not renewed (cdp.lifecycle)."""
    from .lifecycle import jobs_sweep as sweep

    return sweep()
