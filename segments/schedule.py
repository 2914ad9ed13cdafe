"""Periodic jobs of the segments app (merged into cdp/schedule.py's beat schedule)."""

from __future__ import annotations

ENTRIES: dict[str, dict] = {}

# --- clustering (segments/clustering/, owner CLUSTERING) ---
from celery.schedules import crontab  # noqa: E402

ENTRIES["segments-clustering-weekly"] = {
    # Sunday night, after the nightly computed-traits batch (02:15) has refreshed time windows
    "task": "segments.tasks.ml_clustering_run",
    "schedule": crontab(day_of_week="sun", hour=4, minute=0),
}
