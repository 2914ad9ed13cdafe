"""Celery tasks of consent: periodic housekeeping (the requests themselves are rq jobs, jobs.py)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="consent.tasks.privacy_housekeeping")
def privacy_housekeeping() -> dict:
    """Delete expired export archives; re-queue requests whose rq job was lost."""
    from .requests import export_archives_purge, privacy_requests_sweep

    return {"archives_deleted": export_archives_purge(), "requeued": privacy_requests_sweep()}
