"""Periodic jobs of the segments app (merged into cdp/schedule.py's beat schedule)."""

from __future__ import annotations

from celery.schedules import crontab

ENTRIES: dict[str, dict] = {
    # conditions relative to now (windows, "days ago"), consent and cluster references change
    # without an event of the profile: refresh those segments every 15 minutes
    "segments-refresh-time-based": {
        "task": "segments.tasks.heavy_segments_refresh",
        "schedule": crontab(minute="*/15"),
        "kwargs": {"time_based_only": True},
        "options": {"expires": 14 * 60},
    },
    # every rule segment after the nightly computed-traits batch (02:15)
    "segments-refresh-nightly": {
        "task": "segments.tasks.heavy_segments_refresh",
        "schedule": crontab(hour=3, minute=0),
        "options": {"expires": 3600},
    },
}

# --- clustering (segments/clustering/, owner CLUSTERING) ---
ENTRIES["segments-clustering-weekly"] = {
    # Sunday night, after the nightly computed-traits batch (02:15) has refreshed time windows
    "task": "segments.tasks.ml_clustering_run",
    "schedule": crontab(day_of_week="sun", hour=4, minute=0),
}
ENTRIES["segments-cluster-segments-daily"] = {
    # accepted cluster segments: live profiles re-assigned to the nearest stored centre each night
    "task": "segments.tasks.ml_cluster_segments_assign",
    "schedule": crontab(hour=3, minute=30),
    "options": {"expires": 3600},
}
